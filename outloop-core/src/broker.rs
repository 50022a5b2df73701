//! The [`Broker`]: one request through the request flow of DESIGN.md, steps 1 to 8.
//!
//! The steps: identify the workspace; resolve its tenant; decide; resolve the credentials the
//! action declares, for that tenant only; execute; redact; audit durably; return.
//! Every attempt, allowed or denied, leaves one audit record; a denied request touches no
//! backend.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

use crate::action::{Action, Credentials, Params, RawParams};
use crate::audit::{AuditLog, AuditRecord, AuditSink};
use crate::backend::SecretBackend;
use crate::config::HostConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpAction, HttpClient};
use crate::policy::{Decision, Policy, PolicyRequest, RulesPolicy, Target, Verdict};
use crate::redact::{Redactor, RedactorBuilder, SecretRedactor};
use crate::reference::{BackendKind, SecretRef};
use crate::secret::SecretValue;
use crate::workspace::{self, Workspace};

/// One request to perform an action.
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    /// The directory the request comes from (the agent's working directory, or the peer
    /// process's cwd). Canonicalized by the broker.
    pub workspace: PathBuf,
    /// The tenant the caller names, if any. A tenant other than the workspace's is denied.
    pub tenant: Option<String>,
    /// The action name.
    pub action: String,
    /// The parameters as given.
    pub params: RawParams,
}

/// The redacted result of an action: the object `outloop call --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallResult {
    /// The action name.
    pub action: String,
    /// The tenant it ran for.
    pub tenant: String,
    /// The upstream HTTP status (any status; the action ran).
    pub status: u16,
    /// The redacted status text.
    pub status_text: String,
    /// Redacted response headers, name (lower-case) → value; repeated headers joined by `, `.
    pub headers: BTreeMap<String, String>,
    /// The redacted body as text (invalid UTF-8 replaced by U+FFFD).
    pub body: String,
    /// How many secret occurrences were replaced in status text, headers and body.
    pub redactions: usize,
}

/// What `policy explain` shows: the decision for a request and the rule behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The action, or `alias:<name>`.
    pub action: String,
    /// The workspace root that matched.
    pub workspace: String,
    /// The workspace's tenant.
    pub tenant: String,
    /// `allow`, `deny` or `approve`.
    pub decision: String,
    /// The rule that decided.
    pub rule: String,
    /// One line for the reader.
    pub reason: String,
}

/// One entry of `outloop actions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionInfo {
    /// The action name, or `alias:<name>`.
    pub name: String,
    /// `action` or `alias`.
    pub kind: String,
    /// One line.
    pub description: String,
    /// `allow` or `approve` (denied actions are not listed).
    pub decision: String,
    /// The JSON Schema of the parameters (actions only).
    pub params: serde_json::Value,
}

type CacheKey = (String, String, SecretRef);

/// The broker: host config, backends, policy, actions, redaction and audit, behind one call.
///
/// `Broker` is `Send + Sync`; share it with `Arc` across tasks. Credentials are cached for the
/// broker's lifetime, keyed by (tenant, backend, reference), and zeroized when dropped.
pub struct Broker {
    config: Arc<HostConfig>,
    backends: BTreeMap<BackendKind, Arc<dyn SecretBackend>>,
    policy: Arc<dyn Policy>,
    audit: Arc<dyn AuditSink>,
    actions: BTreeMap<String, Arc<dyn Action>>,
    cache: Mutex<HashMap<CacheKey, SecretValue>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config.file)
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Broker`] from a host config, with the backends the embedder supplies.
pub struct BrokerBuilder {
    config: HostConfig,
    backends: Vec<Arc<dyn SecretBackend>>,
    policy: Option<Arc<dyn Policy>>,
    audit: Option<Arc<dyn AuditSink>>,
}

impl BrokerBuilder {
    /// Adds a backend. The first backend of each [`BackendKind`] serves that kind's
    /// references.
    pub fn backend(mut self, backend: Arc<dyn SecretBackend>) -> Self {
        self.backends.push(backend);
        self
    }

    /// Adds several backends (see [`BrokerBuilder::backend`]).
    pub fn backends(mut self, backends: impl IntoIterator<Item = Arc<dyn SecretBackend>>) -> Self {
        self.backends.extend(backends);
        self
    }

    /// Replaces the built-in [`RulesPolicy`].
    pub fn policy(mut self, policy: Arc<dyn Policy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Replaces the audit log at `paths.audit_file()`.
    pub fn audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Compiles the actions and builds the broker.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when an action does not compile (bad pattern, bad template);
    /// [`ErrorKind::Internal`] when the HTTP client cannot be built.
    pub fn build(self) -> Result<Broker> {
        let client = HttpClient::new(&self.config.egress)?;
        let mut actions: BTreeMap<String, Arc<dyn Action>> = BTreeMap::new();
        for (name, cfg) in &self.config.actions {
            actions.insert(
                name.clone(),
                Arc::new(HttpAction::new(name, cfg, client.clone())?),
            );
        }
        let mut backends: BTreeMap<BackendKind, Arc<dyn SecretBackend>> = BTreeMap::new();
        for b in self.backends {
            backends.entry(b.kind()).or_insert(b);
        }
        let policy = self
            .policy
            .unwrap_or_else(|| Arc::new(RulesPolicy::new(&self.config.policy)));
        let audit = self
            .audit
            .unwrap_or_else(|| Arc::new(AuditLog::new(self.config.paths.audit_file())));
        Ok(Broker {
            config: Arc::new(self.config),
            backends,
            policy,
            audit,
            actions,
            cache: Mutex::new(HashMap::new()),
        })
    }
}

/// Collects the facts of one attempt for its audit record.
struct Attempt {
    started: Instant,
    record: AuditRecord,
}

impl Attempt {
    fn new(dir: &Path, action: &str, params: &RawParams) -> Self {
        Self {
            started: Instant::now(),
            record: AuditRecord {
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                request_id: uuid::Uuid::new_v4().to_string(),
                workspace: dir.display().to_string(),
                tenant: None,
                action: action.to_owned(),
                params: params.keys().cloned().collect(),
                decision: "error".into(),
                rule: None,
                reason: None,
                outcome: String::new(),
                status: None,
                duration_ms: 0,
                redactions: 0,
                prev: String::new(),
            },
        }
    }

    fn verdict(&mut self, v: &Verdict) {
        self.record.decision = v.decision.as_str().into();
        self.record.rule = Some(v.rule.clone());
        if v.decision != Decision::Allow {
            self.record.reason = Some(v.reason.clone());
        }
    }
}

impl Broker {
    /// Starts building a broker over `config`.
    pub fn builder(config: HostConfig) -> BrokerBuilder {
        BrokerBuilder {
            config,
            backends: Vec::new(),
            policy: None,
            audit: None,
        }
    }

    /// The host config the broker runs on.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Performs an action for the request's workspace: the whole request flow.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::UnboundWorkspace`]: the directory is in no bound workspace.
    /// - [`ErrorKind::PolicyDenied`]: the request names another tenant, or policy denied it.
    /// - [`ErrorKind::ApprovalRequired`]: policy holds it for a human.
    /// - [`ErrorKind::UnknownAction`], [`ErrorKind::InvalidParameter`]: bad request.
    /// - [`ErrorKind::Config`]: the tenant has no entry for a credential the action needs.
    /// - the backend kinds ([`ErrorKind::NotFound`], [`ErrorKind::Unauthenticated`], …) and
    ///   [`ErrorKind::InvalidSecret`] when a value is below the redaction floor.
    /// - [`ErrorKind::SafetyRefused`], [`ErrorKind::UpstreamUnreachable`],
    ///   [`ErrorKind::Timeout`]: the upstream call failed or was refused.
    /// - [`ErrorKind::Audit`]: the attempt could not be audited; no result is returned.
    ///
    /// Every error is audited before it is returned. No message contains a secret.
    pub async fn call(&self, request: CallRequest) -> Result<CallResult> {
        let mut attempt = Attempt::new(&request.workspace, &request.action, &request.params);
        let outcome = self.run(&request, &mut attempt).await;
        let rec = &mut attempt.record;
        rec.duration_ms = u64::try_from(attempt.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            Ok(r) => {
                rec.outcome = "ok".into();
                rec.status = Some(r.status);
                rec.redactions = r.redactions;
            }
            Err(e) => {
                rec.outcome = e.kind().as_str().into();
                if rec.decision == "error"
                    && matches!(
                        e.kind(),
                        ErrorKind::PolicyDenied | ErrorKind::UnboundWorkspace
                    )
                {
                    rec.decision = "deny".into();
                }
                if rec.reason.is_none() {
                    rec.reason = Some(e.message().to_owned());
                }
            }
        }
        self.append_audit(attempt.record).await?;
        outcome
    }

    async fn append_audit(&self, mut record: AuditRecord) -> Result<()> {
        let audit = Arc::clone(&self.audit);
        tokio::task::spawn_blocking(move || audit.append(&mut record))
            .await
            .map_err(|e| Error::internal(format!("audit task failed: {e}")))?
    }

    /// Steps 1 and 2: workspace and tenant, including the named-tenant check.
    fn identify(
        &self,
        dir: &Path,
        named: Option<&str>,
        attempt: Option<&mut Attempt>,
    ) -> Result<Workspace> {
        let ws = workspace::resolve(&self.config, dir)?;
        if let Some(a) = attempt {
            a.record.workspace = ws.dir.display().to_string();
            a.record.tenant = Some(ws.tenant.clone());
        }
        if let Some(t) = named
            && t != ws.tenant
        {
            return Err(Error::new(
                ErrorKind::PolicyDenied,
                format!(
                    "request names tenant `{t}`, but workspace `{}` is bound to tenant `{}`; denied before any backend was touched",
                    ws.root.display(),
                    ws.tenant
                ),
            ));
        }
        Ok(ws)
    }

    fn action(&self, name: &str) -> Result<&Arc<dyn Action>> {
        self.actions.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownAction,
                format!("no action `{name}` in the host config (see `outloop actions`)"),
            )
        })
    }

    async fn run(&self, request: &CallRequest, attempt: &mut Attempt) -> Result<CallResult> {
        // 1–2. Workspace and tenant.
        let ws = self.identify(&request.workspace, request.tenant.as_deref(), Some(attempt))?;
        // The action and its parameters are checked before policy so a malformed request is
        // reported as such; none of this touches a backend.
        let action = self.action(&request.action)?;
        let params = action.validate(&request.params)?;

        // 3. Decide.
        let verdict = self.policy.decide(&PolicyRequest {
            workspace: &ws.root,
            tenant: &ws.tenant,
            target: Target::Action(action.name()),
            params: &params,
            time: chrono::Utc::now(),
        });
        attempt.verdict(&verdict);
        match verdict.decision {
            Decision::Allow => {}
            Decision::Deny => {
                return Err(Error::new(
                    ErrorKind::PolicyDenied,
                    format!("denied: {} (rule: {})", verdict.reason, verdict.rule),
                ));
            }
            Decision::Approve => {
                return Err(Error::new(
                    ErrorKind::ApprovalRequired,
                    format!(
                        "held: {} (rule: {}); this version cannot hold requests for approval, so it is refused",
                        verdict.reason, verdict.rule
                    ),
                ));
            }
        }

        // 4. Credentials, for this tenant only.
        let credentials = self
            .resolve_credentials(&ws.tenant, action.as_ref())
            .await?;

        // 6 (prepared). The redactor knows every secret of this request and every backend token.
        let redactor = self.redactor(&credentials)?;

        // 5. Execute.
        let response = action.execute(&params, &credentials).await?;
        drop(credentials);

        // 6. Redact status text, headers and body while streaming.
        let mut redactions = 0;
        let status_text = {
            let r = redactor.redact(response.status_text.as_bytes());
            redactions += r.count;
            String::from_utf8_lossy(&r.output).into_owned()
        };
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        // Hop-by-hop headers and the upstream's framing describe the upstream connection and
        // body, not the redacted body returned here.
        const DROPPED: [&str; 5] = [
            "connection",
            "content-length",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
        ];
        for (name, value) in response
            .headers
            .iter()
            .filter(|(n, _)| !DROPPED.contains(&n.as_str()))
        {
            let r = redactor.redact(value);
            redactions += r.count;
            let v = String::from_utf8_lossy(&r.output).into_owned();
            headers
                .entry(name.clone())
                .and_modify(|old| {
                    old.push_str(", ");
                    old.push_str(&v);
                })
                .or_insert(v);
        }
        let mut body = Vec::new();
        let mut stream = redactor.stream();
        let mut chunks = response.body;
        while let Some(chunk) = chunks.next().await {
            // A failing body (size cap, broken connection) discards everything redacted so far.
            redactions += stream.push(&chunk?, &mut body);
        }
        redactions += stream.finish(&mut body);

        Ok(CallResult {
            action: action.name().to_owned(),
            tenant: ws.tenant,
            status: response.status,
            status_text,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            redactions,
        })
    }

    async fn resolve_credentials(&self, tenant: &str, action: &dyn Action) -> Result<Credentials> {
        let tenant_cfg = self.config.tenant(tenant).ok_or_else(|| {
            Error::internal(format!("tenant `{tenant}` vanished from the config"))
        })?;
        let mut out = Credentials::new();
        for name in action.credentials() {
            let entry = tenant_cfg.credentials.get(&name).ok_or_else(|| {
                Error::config(format!(
                    "tenant `{tenant}` has no credential `{name}` (needed by action `{}`); add it under [tenants.{tenant}.credentials]",
                    action.name()
                ))
            })?;
            if entry.pin.is_some() {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "credential `{name}` of tenant `{tenant}` declares an account pin, which this version cannot check; it is blocked rather than used unchecked"
                    ),
                ));
            }
            let value = self
                .fetch(tenant, &entry.reference)
                .await
                .map_err(|e| e.context(format!("credential `{name}` of tenant `{tenant}`")))?;
            out.insert(name, value);
        }
        Ok(out)
    }

    async fn fetch(&self, tenant: &str, reference: &SecretRef) -> Result<SecretValue> {
        let backend = self.backends.get(&reference.kind()).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "no `{}` backend is available for `{reference}`",
                    reference.kind()
                ),
            )
        })?;
        let key = (
            tenant.to_owned(),
            backend.name().to_owned(),
            reference.clone(),
        );
        if let Some(v) = self.lock_cache().get(&key) {
            return Ok(v.clone());
        }
        let value = backend.get(reference).await?;
        self.lock_cache().insert(key, value.clone());
        Ok(value)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, SecretValue>> {
        // Poisoning only means a panic elsewhere; the map itself is intact.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn redactor(&self, credentials: &Credentials) -> Result<SecretRedactor> {
        let mut b = RedactorBuilder::new().floor(self.config.redaction.floor);
        for (name, value) in credentials.iter() {
            b.add(name, value)?;
        }
        for backend in self.backends.values() {
            for token in backend.own_secrets() {
                b.add(&format!("backend:{}", backend.name()), &token)?;
            }
        }
        Ok(b.build())
    }

    /// Explains the decision for an action (or `alias:<name>`) from `dir`, with no backend
    /// call and no audit record.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnboundWorkspace`], [`ErrorKind::UnknownAction`],
    /// [`ErrorKind::InvalidParameter`] as for [`Broker::call`].
    pub fn explain(&self, dir: &Path, target: &str, params: &RawParams) -> Result<Explanation> {
        let ws = self.identify(dir, None, None)?;
        let empty = Params::default();
        let (name, params) = if let Some(alias) = target.strip_prefix("alias:") {
            if !self.config.aliases.contains_key(alias) {
                return Err(Error::new(
                    ErrorKind::UnknownAction,
                    format!("no alias `{alias}` in the host config"),
                ));
            }
            (alias.to_owned(), empty)
        } else {
            let action = self.action(target)?;
            (target.to_owned(), action.validate(params)?)
        };
        let t = if target.starts_with("alias:") {
            Target::Alias {
                name: &name,
                method: "*",
                path: "/",
            }
        } else {
            Target::Action(&name)
        };
        let v = self.policy.decide(&PolicyRequest {
            workspace: &ws.root,
            tenant: &ws.tenant,
            target: t,
            params: &params,
            time: chrono::Utc::now(),
        });
        Ok(Explanation {
            action: target.to_owned(),
            workspace: ws.root.display().to_string(),
            tenant: ws.tenant,
            decision: v.decision.as_str().into(),
            rule: v.rule,
            reason: v.reason,
        })
    }

    /// Redacts a caller's buffer with every secret of the tenant the workspace at `dir` is
    /// bound to: each credential declared in that tenant's `credentials` table is fetched
    /// (through the cache) and searched for in all its encodings, as are the backends' own
    /// tokens. Returns the redacted bytes and the number of replacements.
    ///
    /// No policy decision and no audit record: nothing leaves the host, and the caller learns
    /// nothing but where its own buffer already held a secret. Secrets of other tenants are
    /// not fetched, so a buffer is only protected against its own tenant's credentials.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnboundWorkspace`] when `dir` is in no bound workspace; the backend kinds
    /// ([`ErrorKind::NotFound`], [`ErrorKind::Unavailable`], …) when a credential cannot be
    /// fetched (a partial redaction is never returned); [`ErrorKind::InvalidSecret`] when a
    /// value is below the redaction floor.
    pub async fn redact_for(&self, dir: &Path, input: &[u8]) -> Result<(Vec<u8>, usize)> {
        let ws = self.identify(dir, None, None)?;
        let tenant_cfg = self.config.tenant(&ws.tenant).ok_or_else(|| {
            Error::internal(format!("tenant `{}` vanished from the config", ws.tenant))
        })?;
        let mut credentials = Credentials::new();
        for (name, entry) in &tenant_cfg.credentials {
            let value = self
                .fetch(&ws.tenant, &entry.reference)
                .await
                .map_err(|e| e.context(format!("credential `{name}` of tenant `{}`", ws.tenant)))?;
            credentials.insert(name.clone(), value);
        }
        let redacted = self.redactor(&credentials)?.redact(input);
        Ok((redacted.output, redacted.count))
    }

    /// The actions and aliases the workspace at `dir` may use (allowed or held for
    /// approval), sorted by name.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnboundWorkspace`] when `dir` is in no bound workspace.
    pub fn actions_for(&self, dir: &Path) -> Result<(Workspace, Vec<ActionInfo>)> {
        let ws = self.identify(dir, None, None)?;
        let params = Params::default();
        let decide = |t: Target<'_>| {
            self.policy.decide(&PolicyRequest {
                workspace: &ws.root,
                tenant: &ws.tenant,
                target: t,
                params: &params,
                time: chrono::Utc::now(),
            })
        };
        let mut out = Vec::new();
        for (name, action) in &self.actions {
            let v = decide(Target::Action(name));
            if v.decision != Decision::Deny {
                out.push(ActionInfo {
                    name: name.clone(),
                    kind: "action".into(),
                    description: action.description().to_owned(),
                    decision: v.decision.as_str().into(),
                    params: action.params_schema(),
                });
            }
        }
        for (name, alias) in &self.config.aliases {
            let v = decide(Target::Alias {
                name,
                method: "*",
                path: "/",
            });
            if v.decision != Decision::Deny {
                out.push(ActionInfo {
                    name: format!("alias:{name}"),
                    kind: "alias".into(),
                    description: alias.description.clone().unwrap_or_default(),
                    decision: v.decision.as_str().into(),
                    params: serde_json::Value::Null,
                });
            }
        }
        Ok((ws, out))
    }
}
