//! The Doppler backend: `doppler://<project>/<config>/<NAME>` read over Doppler's REST API v3.
//!
//! Requests (docs.doppler.com/reference/api; DopplerHQ/python-sdk
//! `src/dopplersdk/services/secrets.py`; DopplerHQ/cli `pkg/http/api.go`, v3.77):
//!
//! - one secret: `GET /v3/configs/config/secret?project=<p>&config=<c>&name=<NAME>`, answered
//!   with `{"success":true,"name":…,"value":{"raw":…,"computed":…,"note":…,…}}` (no `secret`
//!   wrapper); `raw` and `computed` may be `null` (restricted);
//! - listing: `GET /v3/configs/config/secrets?project=<p>&config=<c>`, answered with
//!   `{"secrets":{"NAME":{…}},"success":true}`; Doppler's own `DOPPLER_*` metadata keys
//!   (`DOPPLER_PROJECT`, `DOPPLER_CONFIG`, `DOPPLER_ENVIRONMENT`, …) are skipped;
//! - errors: `{"messages":["…"],"success":false}` with 401, 403, 404 or 429.
//!
//! Auth is `Authorization: Bearer <token>`. A service token (`dp.st.…`) is bound to one
//! project and config, so, as Doppler's CLI does, those are not sent; the backend then needs
//! `project` and `config` configured (the token's own) and refuses references to any other,
//! so one tenant's reference can never read another config through the token's implied scope. Personal (`dp.pt.`), CLI (`dp.ct.`) and service-account (`dp.sa.`, `dp.said.`)
//! tokens send the reference's project and config. The token itself is read from another
//! backend by reference (`token = "vault://outloop/doppler-token"`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use outloop_core::backend::{Capabilities, Health, Probe, SecretBackend, expect_kind};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};
use reqwest::Url;
use serde::Deserialize;

use crate::credential::{CredentialSource, Registry};
use crate::rest;

/// Doppler's API when `api_host` is not set.
pub const DEFAULT_API_HOST: &str = "https://api.doppler.com";

/// Which of Doppler's two values to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueForm {
    /// `computed`: references such as `${OTHER}` expanded (the default).
    Computed,
    /// `raw`: the value as typed.
    Raw,
}

/// A Doppler backend instance (`[backends.<name>] kind = "doppler"`).
///
/// Settings: `token` (required: a secret reference to the Doppler token), `api_host`
/// (default `https://api.doppler.com`), `value` (`"computed"`, the default, or `"raw"`),
/// `project` and `config` (optional: restrict the backend to one config, and name what
/// `list` lists) and `timeout_secs` (default 30).
pub struct DopplerBackend {
    name: String,
    api: Url,
    token_source: CredentialSource,
    token: tokio::sync::Mutex<Option<SecretValue>>,
    own: Mutex<Vec<SecretValue>>,
    form: ValueForm,
    project: Option<String>,
    config: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for DopplerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DopplerBackend")
            .field("name", &self.name)
            .field("api", &self.api.as_str())
            .field("token", &self.token_source.reference())
            .field("form", &self.form)
            .field("project", &self.project)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const KEYS: &[&str] = &[
    "token",
    "api_host",
    "value",
    "project",
    "config",
    "timeout_secs",
];

#[derive(Deserialize)]
struct SecretAnswer {
    value: Option<ValueBody>,
}

#[derive(Deserialize)]
struct ValueBody {
    #[serde(default, deserialize_with = "rest::secret_string")]
    raw: Option<SecretValue>,
    #[serde(default, deserialize_with = "rest::secret_string")]
    computed: Option<SecretValue>,
}

#[derive(Deserialize)]
struct ListAnswer {
    secrets: BTreeMap<String, serde::de::IgnoredAny>,
}

impl DopplerBackend {
    /// Builds the backend from its `[backends.<name>]` settings; the token is read through
    /// `registry` at first use.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] naming the key when a setting is missing, unknown or malformed,
    /// or when `token` is not a secret reference.
    pub fn from_settings(
        name: &str,
        settings: &BTreeMap<String, toml::Value>,
        registry: &Registry,
    ) -> Result<Self> {
        rest::deny_unknown(name, settings, KEYS)?;
        let token_source =
            CredentialSource::from_settings(name, "token", settings, registry, true)?
                .ok_or_else(|| Error::internal("a required credential came back empty"))?;
        let api = rest::base_url(
            name,
            "api_host",
            rest::opt_str(name, "api_host", settings)?
                .as_deref()
                .unwrap_or(DEFAULT_API_HOST),
        )?;
        let form = match rest::opt_str(name, "value", settings)?.as_deref() {
            None | Some("computed") => ValueForm::Computed,
            Some("raw") => ValueForm::Raw,
            Some(other) => {
                return Err(Error::config(format!(
                    "backends.{name}.value: `{other}` is not `computed` or `raw`"
                )));
            }
        };
        let timeout = rest::timeout(name, settings, 30)?;
        Ok(Self {
            name: name.to_owned(),
            api,
            token_source,
            token: tokio::sync::Mutex::new(None),
            own: Mutex::new(Vec::new()),
            form,
            project: rest::opt_str(name, "project", settings)?,
            config: rest::opt_str(name, "config", settings)?,
            http: rest::client(timeout)?,
        })
    }

    async fn token(&self) -> Result<SecretValue> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let t = self.token_source.fetch().await?;
        if t.is_empty() || std::str::from_utf8(t.expose_secret()).is_err() {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "backend `{}`: the token at `{}` is empty or not text",
                    self.name,
                    self.token_source.reference()
                ),
            ));
        }
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t.clone());
        *slot = Some(t.clone());
        Ok(t)
    }

    fn check_scope(&self, project: &str, config: &str, reference: &SecretRef) -> Result<()> {
        let mismatch = |want: &Option<String>, got: &str| want.as_deref().is_some_and(|w| w != got);
        if mismatch(&self.project, project) || mismatch(&self.config, config) {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!(
                    "backend `{}` serves project `{}` config `{}` only, not `{reference}`",
                    self.name,
                    self.project.as_deref().unwrap_or("*"),
                    self.config.as_deref().unwrap_or("*")
                ),
            ));
        }
        Ok(())
    }

    /// GETs `path` with the scope query plus `extra`, returning the body of a 200.
    async fn get_json(
        &self,
        path: &str,
        project: &str,
        config: &str,
        extra: &[(&str, &str)],
        what: &str,
    ) -> Result<rest::Response> {
        let token = self.token().await?;
        let token = std::str::from_utf8(token.expose_secret())
            .map_err(|_| Error::internal("token checked as UTF-8 at fetch"))?;
        if token.starts_with("dp.st.") && (self.project.is_none() || self.config.is_none()) {
            // The request cannot name a scope, so without these settings a reference to
            // another project or config would silently read the token's own.
            return Err(Error::config(format!(
                "backends.{}: the token is a service token (bound to one project and config); set `project` and `config` to that project and config",
                self.name
            )));
        }
        let mut url = self.api.clone();
        url.set_path(&format!("{}{path}", self.api.path().trim_end_matches('/')));
        {
            let mut q = url.query_pairs_mut();
            // A service token implies its project and config; Doppler's CLI sends none.
            if !token.starts_with("dp.st.") {
                q.append_pair("project", project)
                    .append_pair("config", config);
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        let bearer = zeroize::Zeroizing::new(format!("Bearer {token}"));
        let mut auth = reqwest::header::HeaderValue::from_str(&bearer).map_err(|_| {
            Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "backend `{}`: the token at `{}` is not a valid header value",
                    self.name,
                    self.token_source.reference()
                ),
            )
        })?;
        auth.set_sensitive(true);
        let req = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json");
        let resp = rest::send(&self.name, what, req).await?;
        if resp.status == 200 {
            return Ok(resp);
        }
        let kind = rest::status_kind(resp.status, resp.retry_after);
        let why = match kind {
            ErrorKind::Unauthenticated => "Doppler refused the token (401)".to_owned(),
            ErrorKind::PermissionDenied => {
                "the token may not read this project or config (403)".to_owned()
            }
            ErrorKind::NotFound => "Doppler has no such project, config or secret (404)".to_owned(),
            ErrorKind::RateLimited { retry_after } => format!(
                "Doppler is rate limiting this token or address (429){}",
                retry_after
                    .map(|d| format!("; retry after {} s", d.as_secs()))
                    .unwrap_or_default()
            ),
            _ => format!("Doppler answered HTTP {}", resp.status),
        };
        Err(Error::new(
            kind,
            format!("backend `{}`: {what}: {why}", self.name),
        ))
    }

    fn parts(reference: &SecretRef) -> (&str, &str, &str) {
        let s = reference.segments();
        (&s[0], &s[1], &s[2])
    }
}

fn bad_answer(backend: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("backend `{backend}`: {what}: Doppler's answer is not the documented JSON"),
    )
}

#[async_trait]
impl SecretBackend for DopplerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Doppler
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read: true,
            list: self.project.is_some() && self.config.is_some(),
            ..Capabilities::default()
        }
    }

    /// Reads `doppler://<project>/<config>/<NAME>` with `GET /v3/configs/config/secret`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a service token without `project` and `config` configured;
    /// [`ErrorKind::InvalidReference`] for another kind, a name Doppler cannot hold
    /// (`[A-Z_][A-Z0-9_]*`), or a project/config other than the configured one;
    /// [`ErrorKind::NotFound`] (404); [`ErrorKind::Unauthenticated`] (401, or an unreadable
    /// token); [`ErrorKind::PermissionDenied`] (403, or a restricted value Doppler returns as
    /// `null`); [`ErrorKind::RateLimited`] (429, with `Retry-After`); [`ErrorKind::Timeout`];
    /// [`ErrorKind::Unavailable`] (unreachable, 5xx, undocumented answer).
    async fn get(&self, reference: &SecretRef) -> Result<SecretValue> {
        expect_kind(&self.name, BackendKind::Doppler, reference)?;
        let (project, config, name) = Self::parts(reference);
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!(
                    "invalid secret reference `{reference}`: Doppler names use A-Z, 0-9 and `_` and do not start with a digit"
                ),
            ));
        }
        self.check_scope(project, config, reference)?;
        let what = format!("reading `{reference}`");
        let resp = self
            .get_json(
                "/v3/configs/config/secret",
                project,
                config,
                &[("name", name)],
                &what,
            )
            .await?;
        let answer: SecretAnswer =
            serde_json::from_slice(&resp.body).map_err(|_| bad_answer(&self.name, &what))?;
        let v = answer.value.ok_or_else(|| bad_answer(&self.name, &what))?;
        let value = match self.form {
            ValueForm::Computed => v.computed,
            ValueForm::Raw => v.raw,
        };
        value.ok_or_else(|| {
            Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "backend `{}`: {what}: Doppler returned no value (the secret is restricted for this token)",
                    self.name
                ),
            )
        })
    }

    /// Lists the configured project and config's secret names with
    /// `GET /v3/configs/config/secrets`, skipping Doppler's `DOPPLER_*` metadata keys.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when `project` and `config` are not configured; otherwise as
    /// for `get`.
    async fn list(&self) -> Result<Vec<SecretRef>> {
        let (Some(project), Some(config)) = (&self.project, &self.config) else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "backend `{}` cannot list: set `project` and `config` in [backends.{}]",
                    self.name, self.name
                ),
            ));
        };
        let what = format!("listing {project}/{config}");
        let resp = self
            .get_json("/v3/configs/config/secrets", project, config, &[], &what)
            .await?;
        let answer: ListAnswer =
            serde_json::from_slice(&resp.body).map_err(|_| bad_answer(&self.name, &what))?;
        let mut out = answer
            .secrets
            .into_keys()
            .filter(|k| !k.starts_with("DOPPLER_"))
            .map(|k| {
                SecretRef::from_parts(
                    BackendKind::Doppler,
                    &[project.as_str(), config.as_str(), &k],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    fn own_secrets(&self) -> Vec<SecretValue> {
        self.own.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks the API and the token without reading any secret value, with one
    /// `GET /v3/me` ("Retrieve token info", what `doppler me` calls; answered with
    /// `{"workplace":{"name","slug"},"type","token_preview","slug","created_at","name",
    /// "last_seen_at"}`, DopplerHQ/cli `pkg/models/api.go` `ActorInfo`,
    /// `pkg/http/api.go` `GetActorInfo`; docs.doppler.com/reference/api):
    ///
    /// - installed: built in (HTTP, no CLI);
    /// - reachable: Doppler gave an HTTP answer, whatever its status;
    /// - authenticated: that answer is 200 with a JSON object (401: the token was refused;
    ///   the answer's fields are not kept or shown). The token is read from its reference
    ///   first; if that fails, authenticated fails and reachable is not checked.
    async fn health(&self) -> Health {
        let installed = Probe::ok("built in (HTTP)");
        let what = "checking the token with GET /v3/me";
        let token = match self.token().await {
            Ok(t) => t,
            Err(e) => {
                return Health {
                    installed,
                    reachable: Probe::skipped("no token to call Doppler with"),
                    authenticated: Probe::failed(&e),
                };
            }
        };
        let Ok(token) = std::str::from_utf8(token.expose_secret()) else {
            return Health {
                installed,
                reachable: Probe::skipped("no token to call Doppler with"),
                authenticated: Probe::failed(&Error::internal("token checked as UTF-8 at fetch")),
            };
        };
        let bearer = zeroize::Zeroizing::new(format!("Bearer {token}"));
        let Ok(mut auth) = reqwest::header::HeaderValue::from_str(&bearer) else {
            return Health {
                installed,
                reachable: Probe::skipped("no usable token to call Doppler with"),
                authenticated: Probe::failed(&Error::new(
                    ErrorKind::Unauthenticated,
                    format!(
                        "backend `{}`: the token at `{}` is not a valid header value",
                        self.name,
                        self.token_source.reference()
                    ),
                )),
            };
        };
        auth.set_sensitive(true);
        let mut url = self.api.clone();
        url.set_path(&format!("{}/v3/me", self.api.path().trim_end_matches('/')));
        let req = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json");
        let resp = match rest::send(&self.name, what, req).await {
            Ok(r) => r,
            Err(e) => return Health::unreachable(installed, &e),
        };
        let reachable = Probe::ok(format!("{} answered (HTTP {})", self.api, resp.status));
        let authenticated = if resp.status == 200 {
            match serde_json::from_slice::<BTreeMap<String, serde::de::IgnoredAny>>(&resp.body) {
                Ok(_) => Probe::ok("Doppler accepted the token (GET /v3/me)"),
                Err(_) => Probe::failed(&bad_answer(&self.name, what)),
            }
        } else {
            let kind = rest::status_kind(resp.status, resp.retry_after);
            let why = match kind {
                ErrorKind::Unauthenticated => "Doppler refused the token (401)".to_owned(),
                _ => format!("Doppler answered HTTP {}", resp.status),
            };
            Probe::failed(&Error::new(
                kind,
                format!("backend `{}`: {what}: {why}", self.name),
            ))
        };
        Health {
            installed,
            reachable,
            authenticated,
        }
    }
}
