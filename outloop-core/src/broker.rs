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
use crate::approval::{Approval, ApprovalState, ApprovalStore, DEFAULT_APPROVAL_TIMEOUT_SECS};
use crate::audit::{AuditLog, AuditRecord, AuditSink};
use crate::backend::SecretBackend;
use crate::backend::cache::{CredentialCache, DEFAULT_CACHE_TTL};
use crate::backend::settings::LayerSettings;
use crate::config::HostConfig;
use crate::config::{ActionConfig, AuthConfig, HttpMethod, PinConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpAction, HttpClient};
use crate::policy::{Decision, Policy, PolicyRequest, RulesPolicy, Target, Verdict};
use crate::ratelimit::RateLimiter;
use crate::redact::{Redactor, RedactorBuilder, SecretRedactor};
use crate::reference::{BackendKind, SecretRef};
use crate::secret::SecretValue;
use crate::workspace::{self, Workspace};

mod alias;

pub use alias::{AliasBody, AliasRequest, AliasResponse};
mod exec;
pub use exec::{EXEC_METHOD, ExecCredential, ExecExit, ExecRequest, ExecSession};

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
    /// The rate limits that apply, with their current use, e.g.
    /// `policy.tenants.acme.rate."send.*" = "20/hour": 3 of 20 used`.
    pub rates: Vec<String>,
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

type PinKey = (String, String, [u8; 32]);

/// Called when a request is held for approval, with the pending approval (for frontends to
/// tell the human what to run).
pub type OnHold = Arc<dyn Fn(&Approval) + Send + Sync>;

/// The broker: host config, backends, policy, actions, redaction and audit, behind one call.
///
/// `Broker` is `Send + Sync`; share it with `Arc` across tasks. Credentials are cached in a
/// [`CredentialCache`] keyed by (tenant, backend, reference) for their backend's `cache_ttl`
/// (default 5 minutes), fetched once however many requests wait, and zeroized when evicted.
pub struct Broker {
    config: Arc<HostConfig>,
    backends: BTreeMap<BackendKind, Arc<dyn SecretBackend>>,
    policy: Arc<dyn Policy>,
    audit: Arc<dyn AuditSink>,
    actions: BTreeMap<String, Arc<dyn Action>>,
    rates: RateLimiter,
    approvals: ApprovalStore,
    on_hold: Option<OnHold>,
    client: HttpClient,
    cache: CredentialCache,
    cache_ttls: HashMap<String, std::time::Duration>,
    pins: Mutex<HashMap<PinKey, bool>>,
    blocked: Mutex<std::collections::HashSet<(String, String)>>,
    redactors: RedactorCache,
    /// Canaries (tenant, reference) whose last fetch failed, and when: not retried for
    /// [`CANARY_RETRY`], so a missing canary costs one backend call per interval, not one
    /// (with retries) per request.
    canary_failures: Mutex<HashMap<(String, String), Instant>>,
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
    on_hold: Option<OnHold>,
}

impl BrokerBuilder {
    /// Sets the function called when a request is held for a human's approval.
    pub fn on_hold(mut self, f: OnHold) -> Self {
        self.on_hold = Some(f);
        self
    }

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
        // Each backend's `cache_ttl` (the layer keys were validated when it was opened).
        let cache_ttls = self
            .config
            .backends
            .iter()
            .map(|(name, b)| {
                let ttl = LayerSettings::parse(name, &b.settings)
                    .map(|l| l.cache_ttl)
                    .unwrap_or(DEFAULT_CACHE_TTL);
                (name.clone(), ttl)
            })
            .collect();
        for b in self.backends {
            backends.entry(b.kind()).or_insert(b);
        }
        let policy = self
            .policy
            .unwrap_or_else(|| Arc::new(RulesPolicy::from_config(&self.config)));
        let rates = RateLimiter::new(self.config.paths.state_dir.join("ratelimit.json"));
        let state_dir = self.config.paths.state_dir.clone();
        let audit = self
            .audit
            .unwrap_or_else(|| Arc::new(AuditLog::new(self.config.paths.audit_file())));
        Ok(Broker {
            config: Arc::new(self.config),
            backends,
            policy,
            audit,
            actions,
            rates,
            approvals: ApprovalStore::new(state_dir.join("approvals")),
            on_hold: self.on_hold,
            client,
            cache: CredentialCache::new(),
            cache_ttls,
            pins: Mutex::new(HashMap::new()),
            blocked: Mutex::new(std::collections::HashSet::new()),
            redactors: RedactorCache::new(),
            canary_failures: Mutex::new(HashMap::new()),
        })
    }
}

/// The label canaries are redacted under: `[REDACTED:secret]`, neutral, so an agent cannot
/// tell a planted canary from a real credential.
pub const CANARY_LABEL: &str = "secret";

/// How long a canary whose fetch failed is skipped before it is fetched again.
const CANARY_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Where an action's or alias's findings were seen, for the audit alert.
const RESPONSE: &str = "the response";

/// Logs a warning when `record` carries an alert (a canary was seen): the tenant, the action,
/// the request id and the canary tenants; never a value.
fn warn_on_alert(record: &AuditRecord) {
    if record.canaries.is_empty() {
        return;
    }
    tracing::warn!(
        tenant = record.tenant.as_deref().unwrap_or("-"),
        action = %record.action,
        request_id = %record.request_id,
        canaries = ?record.canaries,
        "canary seen: a planted fake value came back in a result; see the audit record"
    );
}

/// A printable, bounded form of a name the caller sent (an action, alias, credential or
/// command name), for messages and the audit record: control characters become `?`, and at
/// most `max` characters are kept.
fn shown(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max)
        .collect()
}

/// Collects the facts of one attempt for its audit record.
///
/// Until [`Attempt::take_record`] hands the record over for its append, the attempt is
/// pending: dropped then (the request's future was dropped mid-flight because its caller went
/// away, or the runtime shut down), it appends its record itself, with `outcome =
/// "cancelled"`, so no attempt that may have reached a backend or an upstream goes unaudited.
struct Attempt {
    started: Instant,
    record: AuditRecord,
    /// The sink a dropped, still pending attempt appends to; `None` once handed over.
    pending: Option<Arc<dyn AuditSink>>,
    /// While the request waits for a human: the approval store and the approval's id. A drop
    /// then withdraws the approval, and the record says nothing was sent (rather than "a
    /// backend or the upstream may have been reached") and whether the withdrawal took.
    held: Option<(ApprovalStore, String)>,
}

impl Attempt {
    fn new(dir: &Path, action: &str, audit: &Arc<dyn AuditSink>) -> Self {
        Self {
            started: Instant::now(),
            pending: Some(Arc::clone(audit)),
            held: None,
            record: AuditRecord {
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                request_id: uuid::Uuid::new_v4().to_string(),
                workspace: dir.display().to_string(),
                tenant: None,
                action: action.to_owned(),
                params: Vec::new(),
                decision: "error".into(),
                rule: None,
                reason: None,
                outcome: String::new(),
                status: None,
                duration_ms: 0,
                redactions: 0,
                request: None,
                folded: 0,
                canaries: Vec::new(),
                alert: None,
                prev: String::new(),
            },
        }
    }

    /// Ends the pending state and returns the record, for the caller to append.
    fn take_record(&mut self) -> AuditRecord {
        self.pending = None;
        self.record.clone()
    }

    fn verdict(&mut self, v: &Verdict) {
        self.record.decision = v.decision.as_str().into();
        self.record.rule = Some(v.rule.clone());
        if v.decision != Decision::Allow {
            self.record.reason = Some(v.reason.clone());
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(audit) = self.pending.take() else {
            return;
        };
        let rec = &mut self.record;
        rec.outcome = "cancelled".into();
        rec.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let why = match self.held.take() {
            // Withdrawn first, so that no human approves a request that will never run, and
            // the record says whether that worked.
            Some((approvals, id)) => match approvals.withdraw(&id) {
                Ok(_) => format!(
                    "the caller went away while the request waited for approval; approval \
                     {id} is withdrawn and nothing was sent"
                ),
                Err(e) => {
                    tracing::warn!(approval = %id, error = %e, "a held request's approval could not be withdrawn");
                    format!(
                        "the caller went away while the request waited for approval; nothing \
                         was sent, but approval {id} could not be withdrawn ({})",
                        e.kind()
                    )
                }
            },
            None => "the caller went away before the request finished (a backend or the \
                     upstream may have been reached)"
                .to_owned(),
        };
        rec.reason = Some(match rec.reason.take() {
            Some(r) => format!("{r}; {why}"),
            None => why,
        });
        // Synchronous: a drop cannot await, and at runtime shutdown a spawned task would
        // never run. One append (lock, write, fsync) on a path that is rare.
        if let Err(e) = audit.append(rec) {
            tracing::warn!(
                request_id = %rec.request_id,
                error = %e,
                "the audit record of a cancelled request could not be written"
            );
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
            on_hold: None,
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
    /// Dropping the returned future before it completes (its caller went away) appends the
    /// attempt's record as it drops, with `outcome = "cancelled"`.
    pub async fn call(&self, request: CallRequest) -> Result<CallResult> {
        // A name that is no action is recorded bounded: the caller chose it, at any length.
        let recorded = if self.actions.contains_key(&request.action) {
            request.action.clone()
        } else {
            shown(&request.action, 100)
        };
        let mut attempt = Attempt::new(&request.workspace, &recorded, &self.audit);
        let outcome = self.run(&request, &mut attempt).await;
        let rec = &mut attempt.record;
        // Only declared parameter names reach the audit: an invented name could be anything.
        if let Some(action) = self.actions.get(&request.action) {
            let declared = action.params_schema();
            rec.params = request
                .params
                .keys()
                .filter(|p| declared["properties"].get(p.as_str()).is_some())
                .cloned()
                .collect();
        }
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
        warn_on_alert(&attempt.record);
        self.append_audit(attempt.take_record()).await?;
        outcome
    }

    async fn append_audit(&self, mut record: AuditRecord) -> Result<()> {
        // The append blocks (file lock, write, fsync). On a multi-threaded runtime it runs
        // right here with `block_in_place`, which moves this worker's other tasks to another
        // thread instead of making this request wait for a blocking-pool thread to wake up
        // and then wake it back (two thread hand-offs per request, the largest part of the
        // daemon's added latency). Elsewhere (a current-thread runtime) it goes to the pool.
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            return tokio::task::block_in_place(|| self.audit.append(&mut record));
        }
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
                format!(
                    "no action `{}` in the host config (see `outloop actions`)",
                    shown(name, 100)
                ),
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
            method: action.method(),
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
                self.hold_for_approval(&ws, action.as_ref(), &params, &verdict, attempt)
                    .await?;
            }
        }

        // Rate limits and budgets count only requests policy let through.
        let tenant_policy = self.config.policy.tenants.get(&ws.tenant);
        if let Some(rates) = tenant_policy.map(|t| &t.rate) {
            let now = chrono::Utc::now().timestamp();
            if let Some(hit) = self.rates.acquire(&ws.tenant, action.name(), rates, now)? {
                attempt.record.decision = "deny".into();
                attempt.record.rule = Some(hit.rule.clone());
                return Err(Error::new(
                    ErrorKind::PolicyDenied,
                    format!(
                        "denied: the rate limit for `{}` of tenant `{}` is used up; retry in {} s (rule: {})",
                        action.name(),
                        ws.tenant,
                        hit.retry_after_secs,
                        hit.rule
                    ),
                ));
            }
        }
        let tenant_cap = tenant_policy.and_then(|t| t.max_response_bytes);

        // 4. Credentials, for this tenant only.
        let credentials = self
            .resolve_credentials(&ws.tenant, action.as_ref())
            .await?;

        // 6 (prepared). The redactor knows every secret of this request, every backend token
        // and every tenant's canaries.
        let redactor = self.redactor_for(&credentials).await?;

        // 5. Execute.
        let response = action.execute(&params, &credentials).await?;
        drop(credentials);

        // 6. Redact status text, headers and body while streaming.
        let mut redactions = 0;
        let status_text = {
            let r = redactor.redact(response.status_text.as_bytes());
            redactions += r.count;
            attempt
                .record
                .note_findings(r.folded, &r.canaries, RESPONSE);
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
            // Names too: an upstream can reflect a credential as a header name.
            let n = redactor.redact(name.as_bytes());
            redactions += n.count;
            let name = String::from_utf8_lossy(&n.output).into_owned();
            let r = redactor.redact(value);
            redactions += r.count;
            for found in [&n, &r] {
                attempt
                    .record
                    .note_findings(found.folded, &found.canaries, RESPONSE);
            }
            let v = String::from_utf8_lossy(&r.output).into_owned();
            headers
                .entry(name)
                .and_modify(|old| {
                    old.push_str(", ");
                    old.push_str(&v);
                })
                .or_insert(v);
        }
        let mut body = Vec::new();
        let mut stream = redactor.stream();
        let mut chunks = response.body;
        let mut received: u64 = 0;
        while let Some(chunk) = chunks.next().await {
            // A failing body (size cap, broken connection) discards everything redacted so far;
            // what was found in it still reaches the audit record.
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let f = stream.findings();
                    attempt
                        .record
                        .note_findings(f.folded, &f.canaries, RESPONSE);
                    return Err(e);
                }
            };
            received = received.saturating_add(chunk.len() as u64);
            if let Some(cap) = tenant_cap.filter(|&cap| received > cap) {
                let f = stream.findings();
                attempt
                    .record
                    .note_findings(f.folded, &f.canaries, RESPONSE);
                return Err(Error::new(
                    ErrorKind::SafetyRefused,
                    format!(
                        "response body exceeds the {cap}-byte cap of tenant `{}` (policy.tenants.{}.max_response_bytes)",
                        ws.tenant, ws.tenant
                    ),
                ));
            }
            redactions += stream.push(&chunk, &mut body);
        }
        redactions += stream.finish(&mut body);
        let f = stream.findings();
        attempt
            .record
            .note_findings(f.folded, &f.canaries, RESPONSE);

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

    /// Holds the request until a human approves this exact request, rejects it, or the
    /// tenant's approval timeout passes. Returns `Ok` once the approval is consumed.
    async fn hold_for_approval(
        &self,
        ws: &Workspace,
        action: &dyn Action,
        params: &Params,
        verdict: &Verdict,
        attempt: &mut Attempt,
    ) -> Result<()> {
        self.hold(ws, action.name(), action.method(), params, verdict, attempt)
            .await
    }

    /// As [`Broker::hold_for_approval`], for a target named `name` (an action or
    /// `alias:<name>`) sent with `method`.
    async fn hold(
        &self,
        ws: &Workspace,
        name: &str,
        method: &str,
        params: &Params,
        verdict: &Verdict,
        attempt: &mut Attempt,
    ) -> Result<()> {
        let timeout = self
            .config
            .policy
            .tenants
            .get(&ws.tenant)
            .and_then(|t| t.approval_timeout_secs)
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECS);
        let now = chrono::Utc::now().timestamp();
        let held = self.approvals.hold(Approval {
            id: uuid::Uuid::new_v4().to_string(),
            created: now,
            expires: now.saturating_add(i64::try_from(timeout).unwrap_or(i64::MAX)),
            workspace: ws.root.display().to_string(),
            tenant: ws.tenant.clone(),
            action: name.to_owned(),
            method: method.to_owned(),
            params: params.to_json(),
            rule: verdict.rule.clone(),
            state: ApprovalState::Pending,
        })?;
        attempt.record.reason = Some(format!("held for approval as {}", held.id));
        // Until a decision ends the wait, a request that goes away takes its approval with
        // it (see `Attempt`'s drop), and its record says that nothing was sent.
        attempt.held = Some((self.approvals.clone(), held.id.clone()));
        if let Some(f) = &self.on_hold {
            f(&held);
        }
        let decided = loop {
            let state = match self
                .approvals
                .poll(&held.id, chrono::Utc::now().timestamp())
            {
                Ok(state) => state,
                Err(e) => break Err(e),
            };
            match state {
                ApprovalState::Pending => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                ApprovalState::Approved => {
                    attempt.record.reason = Some(format!("approved by a human ({})", held.id));
                    break Ok(());
                }
                ApprovalState::Rejected => {
                    break Err(Error::new(
                        ErrorKind::PolicyDenied,
                        format!("rejected by a human (approval {})", held.id),
                    ));
                }
                ApprovalState::Withdrawn => {
                    break Err(Error::new(
                        ErrorKind::ApprovalRequired,
                        format!("approval {} was withdrawn", held.id),
                    ));
                }
                ApprovalState::Expired | ApprovalState::Consumed => {
                    break Err(Error::new(
                        ErrorKind::ApprovalRequired,
                        format!(
                            "not approved within {timeout} s (approval {}; rule: {})",
                            held.id, verdict.rule
                        ),
                    ));
                }
            }
        };
        // The wait is over. A failure to read the store leaves the request unable to learn the
        // decision, so its approval is withdrawn here too (best effort: the error that ends
        // the request is the read's).
        attempt.held = None;
        if decided.is_err()
            && let Err(e) = self.approvals.withdraw(&held.id)
        {
            tracing::debug!(approval = %held.id, error = %e, "approval not withdrawn");
        }
        decided
    }

    /// Checks, once per credential value, that a pinned credential belongs to the pinned
    /// upstream account: calls the identity endpoint with the credential applied as the action
    /// applies it and compares the value at the JSON pointer.
    async fn check_pin(
        &self,
        tenant: &str,
        name: &str,
        value: &SecretValue,
        pin: &PinConfig,
        auth: AuthConfig,
    ) -> Result<()> {
        use sha2::{Digest, Sha256};
        let key = (
            tenant.to_owned(),
            name.to_owned(),
            Sha256::digest(value.expose_secret()).into(),
        );
        let cached = self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        let ok = match cached {
            Some(ok) => ok,
            None => {
                let cfg = ActionConfig {
                    description: None,
                    credential: Some(name.to_owned()),
                    method: HttpMethod::Get,
                    url: pin.url.clone(),
                    query: BTreeMap::new(),
                    headers: BTreeMap::new(),
                    body: None,
                    auth: Some(auth),
                    params: BTreeMap::new(),
                    timeout_secs: None,
                    max_response_bytes: Some(1024 * 1024),
                    write: Some(false),
                    credential_headers: BTreeMap::new(),
                    form: BTreeMap::new(),
                };
                let probe =
                    HttpAction::new(&format!("pin:{tenant}.{name}"), &cfg, self.client.clone())?;
                let mut creds = Credentials::new();
                creds.insert(name, value.clone());
                let resp = probe.execute(&Params::default(), &creds).await?;
                let mut body = Vec::new();
                let mut chunks = resp.body;
                while let Some(c) = chunks.next().await {
                    body.extend_from_slice(&c?);
                }
                let found = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.pointer(&pin.pointer).cloned())
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    });
                let ok = (200..300).contains(&resp.status)
                    && found.as_deref() == Some(pin.expect.as_str());
                self.pins
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, ok);
                ok
            }
        };
        if ok {
            Ok(())
        } else {
            // Blocked for this tenant: later requests are refused without reading the secret.
            self.lock_blocked()
                .insert((tenant.to_owned(), name.to_owned()));
            Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "credential `{name}` of tenant `{tenant}` does not belong to the pinned account ({} at {} is not `{}`); it is blocked for this tenant",
                    pin.pointer, pin.url, pin.expect
                ),
            ))
        }
    }

    async fn resolve_credentials(&self, tenant: &str, action: &dyn Action) -> Result<Credentials> {
        let cfg = self.config.actions.get(action.name());
        // A credential the action sends in a `credential_headers` header is probed the same
        // way; the main credential with the action's `auth`.
        let auth_for = |name: &str| {
            cfg.and_then(|a| {
                a.credential_headers
                    .iter()
                    .find(|(_, c)| c.as_str() == name && a.credential.as_deref() != Some(name))
                    .map(|(h, _)| AuthConfig::Header {
                        name: h.clone(),
                        format: None,
                    })
            })
            .or_else(|| cfg.and_then(|a| a.auth.clone()))
            .unwrap_or(AuthConfig::Bearer)
        };
        self.resolve_named(
            tenant,
            &action.credentials(),
            &format!("action `{}`", action.name()),
            auth_for,
        )
        .await
    }

    /// Resolves credentials `names` for `tenant`; `owner` (e.g. ``action `x` ``) names who
    /// needs them in errors, `auth_for(name)` is how a pinned credential is applied to its pin
    /// check.
    async fn resolve_named(
        &self,
        tenant: &str,
        names: &[String],
        owner: &str,
        auth_for: impl Fn(&str) -> AuthConfig + Send + Sync,
    ) -> Result<Credentials> {
        let tenant_cfg = self.config.tenant(tenant).ok_or_else(|| {
            Error::internal(format!("tenant `{tenant}` vanished from the config"))
        })?;
        let mut out = Credentials::new();
        for name in names {
            let name = name.clone();
            let entry = tenant_cfg.credentials.get(&name).ok_or_else(|| {
                Error::config(format!(
                    "tenant `{tenant}` has no credential `{name}` (needed by {owner}); add it under [tenants.{tenant}.credentials]"
                ))
            })?;
            if entry.pin.is_some()
                && self
                    .lock_blocked()
                    .contains(&(tenant.to_owned(), name.clone()))
            {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "credential `{name}` of tenant `{tenant}` failed its account pin check earlier and is blocked"
                    ),
                ));
            }
            let value = self
                .fetch(tenant, &entry.reference)
                .await
                .map_err(|e| e.context(format!("credential `{name}` of tenant `{tenant}`")))?;
            if let Some(pin) = &entry.pin {
                self.check_pin(tenant, &name, &value, pin, auth_for(&name))
                    .await?;
            }
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
        let ttl = self
            .cache_ttls
            .get(backend.name())
            .copied()
            .unwrap_or(DEFAULT_CACHE_TTL);
        self.cache.get(tenant, backend, reference, ttl).await
    }

    fn lock_blocked(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, String)>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The redactor for `credentials` plus every backend's own tokens. Building one compiles
    /// every variant of every secret into an automaton (milliseconds), so built redactors are
    /// kept, keyed by a keyed digest of exactly what went in (labels and values): a rotated
    /// value gets a new redactor, and the same set on the next request reuses the old one.
    ///
    /// Canaries come in as (tenant, value) pairs, registered after the credentials under the
    /// neutral label [`CANARY_LABEL`]; they are part of the cache key.
    fn redactor(
        &self,
        credentials: &Credentials,
        canaries: &[(String, SecretValue)],
    ) -> Result<SecretRedactor> {
        let mut entries: Vec<(String, SecretValue)> = credentials
            .iter()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .collect();
        for backend in self.backends.values() {
            for token in backend.own_secrets() {
                entries.push((format!("backend:{}", backend.name()), token));
            }
        }
        let key = self
            .redactors
            .key(self.config.redaction.floor, &entries, canaries);
        if let Some(hit) = self.redactors.get(&key) {
            return Ok(hit);
        }
        let mut b = RedactorBuilder::new().floor(self.config.redaction.floor);
        for (label, value) in &entries {
            b.add(label, value)?;
        }
        for (tenant, value) in canaries {
            // A canary that cannot be registered (below the floor, punctuation only) is
            // reported and skipped: it must not block the tenant's real calls.
            if let Err(e) = b.add_canary(tenant, CANARY_LABEL, value) {
                tracing::warn!(
                    tenant = %tenant,
                    error = %e,
                    "a canary of this tenant cannot be searched for; it is skipped"
                );
            }
        }
        let built = b.build();
        self.redactors.insert(key, built.clone());
        Ok(built)
    }

    /// [`Broker::redactor`] with the canaries of every tenant resolved first.
    async fn redactor_for(&self, credentials: &Credentials) -> Result<SecretRedactor> {
        let canaries = self.canaries().await;
        self.redactor(credentials, &canaries)
    }

    /// The canary values of every tenant (`[tenants.<name>] canaries`), as (tenant, value),
    /// fetched through the credential cache like credentials.
    ///
    /// A canary that cannot be fetched does not fail the request: the call proceeds without
    /// it, and a warning names the tenant, the reference and the error kind (never a value).
    /// A canary guards against leaks across tenants; blocking every tenant's calls because
    /// one planted fake is missing would turn a tripwire into an outage. A failed canary is
    /// not fetched again for [`CANARY_RETRY`] (60 s), so an unavailable backend does not
    /// slow every request down with its retries.
    async fn canaries(&self) -> Vec<(String, SecretValue)> {
        let mut out = Vec::new();
        for (tenant, cfg) in &self.config.tenants {
            for reference in &cfg.canaries {
                let key = (tenant.clone(), reference.to_string());
                let recent = self
                    .lock_canary_failures()
                    .get(&key)
                    .is_some_and(|at| at.elapsed() < CANARY_RETRY);
                if recent {
                    continue;
                }
                match self.fetch(tenant, reference).await {
                    Ok(value) => {
                        self.lock_canary_failures().remove(&key);
                        out.push((tenant.clone(), value));
                    }
                    Err(e) => {
                        tracing::warn!(
                            tenant = %tenant,
                            reference = %reference,
                            kind = e.kind().as_str(),
                            error = %e,
                            "a canary cannot be resolved; requests go on without it for {} s",
                            CANARY_RETRY.as_secs()
                        );
                        self.lock_canary_failures().insert(key, Instant::now());
                    }
                }
            }
        }
        out
    }

    fn lock_canary_failures(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.canary_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Explains the decision for an action (or `alias:<name>`) from `dir`, with no backend
    /// call and no audit record.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnboundWorkspace`], [`ErrorKind::UnknownAction`],
    /// [`ErrorKind::InvalidParameter`] as for [`Broker::call`].
    pub fn explain(&self, dir: &Path, target: &str, params: &RawParams) -> Result<Explanation> {
        self.explain_request(dir, target, params, None)
    }

    /// As [`Broker::explain`], with the method and path of an alias request
    /// (`alias:<name>` targets only) so the alias's `METHOD /path` rules are checked too.
    ///
    /// # Errors
    ///
    /// As for [`Broker::explain`]; [`ErrorKind::Usage`] when a method and path are given for
    /// an action, or the path does not start with `/`.
    pub fn explain_request(
        &self,
        dir: &Path,
        target: &str,
        params: &RawParams,
        alias_request: Option<(&str, &str)>,
    ) -> Result<Explanation> {
        let ws = self.identify(dir, None, None)?;
        if let Some((_, path)) = alias_request {
            if !target.starts_with("alias:") {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "a method and path apply only to `alias:<name>` targets",
                ));
            }
            if !path.starts_with('/') {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("alias path `{path}` must start with `/`"),
                ));
            }
        }
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
        let (method, path) = alias_request.unwrap_or(("*", "/"));
        let (t, method) = if target.starts_with("alias:") {
            (
                Target::Alias {
                    name: &name,
                    method,
                    path,
                },
                method,
            )
        } else {
            (Target::Action(&name), self.action(&name)?.method())
        };
        let mut v = self.policy.decide(&PolicyRequest {
            workspace: &ws.root,
            tenant: &ws.tenant,
            target: t,
            method,
            params: &params,
            time: chrono::Utc::now(),
        });
        let mut rates = Vec::new();
        if let Some(tp) = self.config.policy.tenants.get(&ws.tenant) {
            let usage = self.rates.usage(
                &ws.tenant,
                &t.policy_name(),
                &tp.rate,
                chrono::Utc::now().timestamp(),
            )?;
            for (rule, used, limit) in usage {
                if v.decision != Decision::Deny && used >= limit as usize {
                    v = Verdict {
                        decision: Decision::Deny,
                        rule: rule.clone(),
                        reason: format!(
                            "the rate limit for `{}` of tenant `{}` is used up",
                            t.policy_name(),
                            ws.tenant
                        ),
                    };
                }
                rates.push(format!("{rule}: {used} of {limit} used"));
            }
        }
        Ok(Explanation {
            action: target.to_owned(),
            workspace: ws.root.display().to_string(),
            tenant: ws.tenant,
            decision: v.decision.as_str().into(),
            rule: v.rule,
            reason: v.reason,
            rates,
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
        let redacted = self.redactor_for(&credentials).await?.redact(input);
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
        let decide = |t: Target<'_>, method: &str| {
            self.policy.decide(&PolicyRequest {
                workspace: &ws.root,
                tenant: &ws.tenant,
                target: t,
                method,
                params: &params,
                time: chrono::Utc::now(),
            })
        };
        let mut out = Vec::new();
        for (name, action) in &self.actions {
            let v = decide(Target::Action(name), action.method());
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
            let v = decide(
                Target::Alias {
                    name,
                    method: "*",
                    path: "/",
                },
                "*",
            );
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

/// Built redactors by a keyed SHA-256 of their inputs (see `Broker::redactor`). The key is
/// random per broker, so the map holds no digest an attacker could test guesses against
/// offline. At most [`RedactorCache::CAPACITY`] entries; when full it starts over.
struct RedactorCache {
    key: [u8; 32],
    map: Mutex<HashMap<[u8; 32], SecretRedactor>>,
}

impl RedactorCache {
    /// Distinct credential sets kept at once.
    const CAPACITY: usize = 256;

    fn new() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self {
            key,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn key(
        &self,
        floor: usize,
        entries: &[(String, SecretValue)],
        canaries: &[(String, SecretValue)],
    ) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((floor as u64).to_le_bytes());
        // Lengths go in first, so credentials and canaries can never be confused.
        h.update((entries.len() as u64).to_le_bytes());
        h.update((canaries.len() as u64).to_le_bytes());
        for (label, value) in entries.iter().chain(canaries) {
            h.update((label.len() as u64).to_le_bytes());
            h.update(label.as_bytes());
            h.update((value.expose_secret().len() as u64).to_le_bytes());
            h.update(value.expose_secret());
        }
        h.finalize().into()
    }

    fn get(&self, key: &[u8; 32]) -> Option<SecretRedactor> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn insert(&self, key: [u8; 32], redactor: SecretRedactor) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(key, redactor);
    }
}
