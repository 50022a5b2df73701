//! `exec`: the request flow for running a local command with credentials in its environment.
//!
//! [`Broker::exec_start`] runs steps 1 to 4 of the request flow for a command the caller
//! will start itself: workspace, tenant, policy, credentials. The policy target of each
//! credential is `exec:<credential>`, matched by the tenant's `allow`, `deny` and `approve`
//! globs like an action name (so `default = "deny"` denies it, `read_only = true` denies it,
//! and `rate = { "exec:*" = "10/hour" }` limits it); its method is `EXEC`. Every credential
//! of a request must be allowed; one denial denies the request, one `approve` holds the
//! whole request for a human. It returns an [`ExecSession`]: the values to place in the
//! child's environment and a redactor for the child's output, after an audit record
//! (`outcome = "started"`) is on disk. [`Broker::exec_finish`] appends the second record of
//! the request (same `request_id`) with how the command ended.
//!
//! Audit records name the credentials (in `action`, as `exec:<name>[,<name>…]`) and the
//! command (argv\[0\], in `reason`), never its arguments or any environment value.
//!
//! The child holds the secret in its environment and can transform it beyond redaction's
//! reach: this is weaker than HTTP injection, where the secret never leaves the broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Attempt, Broker};
use crate::action::{Action, ActionResponse, Credentials, ParamValue, Params, RawParams};
use crate::config::AuthConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::{check_variable, default_variable};
use crate::policy::{Decision, PolicyRequest, Target, Verdict};
use crate::redact::{Findings, SecretRedactor};
use crate::secret::SecretValue;
use crate::workspace::Workspace;

#[cfg(test)]
mod tests;

/// The method policy sees for an exec request (so a `read_only` tenant denies it).
pub const EXEC_METHOD: &str = "EXEC";

/// The longest argv\[0\] recorded in the audit, in characters.
const MAX_COMMAND_CHARS: usize = 200;

/// One credential an exec request asks for and the environment variable it goes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCredential {
    /// The credential name, as in the tenant's `credentials` table.
    pub name: String,
    /// The variable the value goes in.
    pub variable: String,
}

impl ExecCredential {
    /// Parses `NAME` or `NAME=VAR` (the `--credential` syntax). Without `=VAR` the variable
    /// is [`default_variable`] of the name. The variable is checked with
    /// [`check_variable`](crate::exec::check_variable).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`], naming the `--credential` value, when the name is empty or the
    /// variable is empty, malformed or refused.
    pub fn parse(spec: &str) -> Result<Self> {
        let (name, variable) = match spec.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (spec.to_owned(), default_variable(spec)),
        };
        let c = Self { name, variable };
        c.check()
            .map_err(|e| e.context(format!("--credential `{}`", super::shown(spec, 80))))?;
        Ok(c)
    }

    fn check(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                "the credential name is empty (expected NAME or NAME=VAR)",
            ));
        }
        check_variable(&self.variable)
    }
}

/// A request to run a command with credentials in its environment.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The directory the request comes from; canonicalized by the broker.
    pub workspace: PathBuf,
    /// The tenant the caller names, if any. A tenant other than the workspace's is denied.
    pub tenant: Option<String>,
    /// The credentials and their variables (at least one; variables distinct).
    pub credentials: Vec<ExecCredential>,
    /// The command's argv\[0\], as the caller will run it: recorded in the audit and shown to
    /// an approver. Arguments are never passed to the broker.
    pub command: String,
}

/// How an exec'd command ended, for [`Broker::exec_finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecExit {
    /// The command exited with this status code.
    Exited(i32),
    /// The command was ended by this signal number.
    Signaled(i32),
    /// The command could not be started (not found, not executable, …): the error kind and
    /// a one-line message with no secret.
    NotStarted(ErrorKind, String),
    /// How the command ended is not known: the frontend that ran it went away before saying
    /// (the daemon records `outcome = "client_gone"`), or the daemon that handed out the
    /// credentials stopped first (`"daemon_stopped"`). `outcome` is recorded as given;
    /// `why` is a one-line reason with no secret.
    Unknown {
        /// The audit outcome, e.g. `client_gone`.
        outcome: String,
        /// Why it is not known.
        why: String,
    },
}

impl ExecExit {
    /// The exit code a shell would report: the status, 128 + the signal number, or 127 for a
    /// command that was not found and 126 for one that could not be run, as `env` does
    /// (POSIX.1-2017, Shell Command Language 2.8.2); 1 for [`ExecExit::Unknown`].
    pub fn code(&self) -> i32 {
        match self {
            ExecExit::Exited(c) => *c,
            ExecExit::Signaled(s) => 128 + s,
            ExecExit::NotStarted(ErrorKind::NotFound, _) => 127,
            ExecExit::NotStarted(..) => 126,
            // Never an exit code outloop reports: nobody is left to report it to.
            ExecExit::Unknown { .. } => 1,
        }
    }
}

/// An allowed exec request: the values for the child's environment, the redactor for its
/// output, and what [`Broker::exec_finish`] needs for the closing audit record.
///
/// Its `Debug` shows the tenant, workspace and variable names, never a value. The values
/// are zeroized when the session (or what [`ExecSession::take_variables`] returned) drops.
pub struct ExecSession {
    tenant: String,
    workspace: PathBuf,
    command: String,
    variables: Vec<(String, SecretValue)>,
    /// Every tenant's canaries as (tenant, value), registered in `redactor` too.
    canaries: Vec<(String, SecretValue)>,
    redactor: SecretRedactor,
    attempt: Attempt,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("tenant", &self.tenant)
            .field("workspace", &self.workspace)
            .field("command", &self.command)
            .field(
                "variables",
                &self.variables.iter().map(|(v, _)| v).collect::<Vec<_>>(),
            )
            .field("request_id", &self.attempt.record.request_id)
            .finish_non_exhaustive()
    }
}

impl ExecSession {
    /// The tenant the command runs for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The canonical workspace root the request came from.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The audit request id shared by this request's records.
    pub fn request_id(&self) -> &str {
        &self.attempt.record.request_id
    }

    /// The redactor for the child's output: every requested credential in all its encodings
    /// and every backend's own token. Start one stream per output
    /// ([`SecretRedactor::stream_session`]).
    pub fn redactor(&self) -> &SecretRedactor {
        &self.redactor
    }

    /// Takes the (variable, value) pairs for the child's environment, in request order;
    /// later calls return nothing. Drop them as soon as the child is spawned.
    pub fn take_variables(&mut self) -> Vec<(String, SecretValue)> {
        std::mem::take(&mut self.variables)
    }

    /// Takes the canary values of every tenant (`[tenants.<name>] canaries`) as (tenant,
    /// value), the ones [`ExecSession::redactor`] holds, for a process that redacts the
    /// command's output itself (the daemon's client) and must raise the same alerts; later
    /// calls return nothing. Canaries are planted fakes, not credentials.
    pub fn take_canaries(&mut self) -> Vec<(String, SecretValue)> {
        std::mem::take(&mut self.canaries)
    }
}

/// What `exec_run` grants: the workspace, the (variable, value) pairs, every tenant's
/// canaries and the redactor over both.
type ExecGrant = (
    Workspace,
    Vec<(String, SecretValue)>,
    Vec<(String, SecretValue)>,
    SecretRedactor,
);

/// Stands in for an action while an exec request is held for approval, so the approval
/// store shows `EXEC exec:<names>` with the command.
struct ExecTarget {
    name: String,
    credentials: Vec<String>,
}

#[async_trait]
impl Action for ExecTarget {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "run a local command with credentials in its environment"
    }
    fn method(&self) -> &str {
        EXEC_METHOD
    }
    fn credentials(&self) -> Vec<String> {
        self.credentials.clone()
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn validate(&self, _raw: &RawParams) -> Result<Params> {
        Ok(Params::default())
    }
    async fn execute(&self, _p: &Params, _c: &Credentials) -> Result<ActionResponse> {
        Err(Error::internal(
            "an exec request is run by its frontend, not executed as an action",
        ))
    }
}

impl Broker {
    /// Runs the request flow for `outloop exec` up to handing out the credentials: workspace,
    /// tenant, policy on `exec:<credential>` for each credential, rate limits, approval,
    /// then the credentials from the backends (this tenant's only) and a redactor for the
    /// child's output. Appends an audit record with `outcome = "started"` before returning.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Usage`]: no credential, an empty name, a malformed or refused variable,
    ///   a variable given twice, or an empty command.
    /// - [`ErrorKind::UnboundWorkspace`], [`ErrorKind::PolicyDenied`],
    ///   [`ErrorKind::ApprovalRequired`]: as for [`Broker::call`]; no backend is read.
    /// - [`ErrorKind::Config`]: the tenant has no such credential.
    /// - the backend kinds, [`ErrorKind::InvalidSecret`], and [`ErrorKind::PermissionDenied`]
    ///   for a credential that failed its account pin.
    /// - [`ErrorKind::Audit`]: the attempt could not be audited; no value is returned.
    ///
    /// Every error is audited before it is returned. No message contains a secret.
    /// Dropping the returned future before it completes (its caller went away) appends the
    /// attempt's record as it drops, with `outcome = "cancelled"`.
    pub async fn exec_start(&self, request: ExecRequest) -> Result<ExecSession> {
        let names = distinct_names(&request.credentials);
        let target = format!("exec:{}", names.join(","));
        let mut attempt = Attempt::new(&request.workspace, &target, &self.audit);
        let command = command_name(&request.command);
        attempt.record.reason = Some(format!("command `{command}`"));
        let outcome = self.exec_run(&request, &names, &mut attempt).await;
        let rec = &mut attempt.record;
        rec.duration_ms = u64::try_from(attempt.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok((ws, variables, canaries, redactor)) => {
                rec.outcome = "started".into();
                // The record that the secret was handed out is on disk before it is. From
                // here the session's owner closes the record (`exec_finish`).
                self.append_audit(attempt.take_record()).await?;
                Ok(ExecSession {
                    tenant: ws.tenant,
                    workspace: ws.root,
                    command,
                    variables,
                    canaries,
                    redactor,
                    attempt,
                })
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
                rec.reason = Some(format!("command `{command}`: {}", e.message()));
                self.append_audit(attempt.take_record()).await?;
                Err(e)
            }
        }
    }

    /// Appends the closing audit record of an exec request: the same request id, decision
    /// and rule as the opening one, `outcome = "ok"` when the command ran (whatever its exit
    /// code), the error kind when it could not be started, the given outcome when how it
    /// ended is not known ([`ExecExit::Unknown`]), the exit code in `reason`,
    /// `redactions` (replacements made in the command's output) and the total duration.
    /// Consumes the session, zeroizing any values not taken.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Audit`] when the record cannot be written.
    pub async fn exec_finish(
        &self,
        session: ExecSession,
        exit: ExecExit,
        redactions: usize,
    ) -> Result<()> {
        let findings = Findings {
            count: redactions,
            ..Findings::default()
        };
        self.exec_finish_with(session, exit, &findings).await
    }

    /// [`Broker::exec_finish`] with everything the output's redaction found: `findings.count`
    /// becomes `redactions`, and `folded`, `canaries` and `alert` are filled from the rest
    /// (a canary seen in the command's output raises the alert and a `tracing` warning).
    /// Pass the findings of all the command's output streams together (counts added,
    /// canary tenants united).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Audit`] when the record cannot be written.
    pub async fn exec_finish_with(
        &self,
        session: ExecSession,
        exit: ExecExit,
        findings: &Findings,
    ) -> Result<()> {
        let ExecSession {
            command,
            mut attempt,
            ..
        } = session;
        let rec = &mut attempt.record;
        rec.duration_ms = u64::try_from(attempt.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        rec.redactions = findings.count;
        rec.note_findings(findings.folded, &findings.canaries, "the command's output");
        match &exit {
            ExecExit::Exited(c) => {
                rec.outcome = "ok".into();
                rec.reason = Some(format!("command `{command}` exited with code {c}"));
            }
            ExecExit::Signaled(s) => {
                rec.outcome = "ok".into();
                rec.reason = Some(format!(
                    "command `{command}` was ended by signal {s} (exit code {})",
                    exit.code()
                ));
            }
            ExecExit::NotStarted(kind, message) => {
                rec.outcome = kind.as_str().into();
                rec.reason = Some(format!(
                    "command `{command}` could not be started: {message}"
                ));
            }
            ExecExit::Unknown { outcome, why } => {
                rec.outcome = outcome.clone();
                rec.reason = Some(format!("command `{command}`: {why}"));
            }
        }
        super::warn_on_alert(&attempt.record);
        self.append_audit(attempt.take_record()).await
    }

    async fn exec_run(
        &self,
        request: &ExecRequest,
        names: &[String],
        attempt: &mut Attempt,
    ) -> Result<ExecGrant> {
        // Malformed requests are refused before anything else, as `call` refuses bad
        // parameters before policy.
        if request.credentials.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                "name at least one credential (--credential NAME[=VAR])",
            ));
        }
        if request.command.is_empty() {
            return Err(Error::new(ErrorKind::Usage, "the command is empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &request.credentials {
            c.check()
                .map_err(|e| e.context(format!("--credential `{}`", super::shown(&c.name, 80))))?;
            if !seen.insert(c.variable.as_str()) {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("variable `{}` is given twice", c.variable),
                ));
            }
        }

        // 1–2. Workspace and tenant.
        let ws = self.identify(&request.workspace, request.tenant.as_deref(), Some(attempt))?;

        // 3. Decide, per credential; one denial denies, one approval holds the request.
        let now = chrono::Utc::now();
        let params = Params::default();
        let verdicts: Vec<Verdict> = names
            .iter()
            .map(|n| {
                let target = format!("exec:{n}");
                self.policy.decide(&PolicyRequest {
                    workspace: &ws.root,
                    tenant: &ws.tenant,
                    target: Target::Action(&target),
                    method: EXEC_METHOD,
                    params: &params,
                    time: now,
                })
            })
            .collect();
        let deciding = verdicts
            .iter()
            .find(|v| v.decision == Decision::Deny)
            .or_else(|| verdicts.iter().find(|v| v.decision == Decision::Approve))
            .cloned()
            .unwrap_or_else(|| {
                let mut rules: Vec<&str> = Vec::new();
                for v in &verdicts {
                    if !rules.contains(&v.rule.as_str()) {
                        rules.push(&v.rule);
                    }
                }
                Verdict {
                    decision: Decision::Allow,
                    rule: rules.join("; "),
                    reason: String::new(),
                }
            });
        attempt.verdict(&deciding);
        match deciding.decision {
            Decision::Allow => {}
            Decision::Deny => {
                return Err(Error::new(
                    ErrorKind::PolicyDenied,
                    format!("denied: {} (rule: {})", deciding.reason, deciding.rule),
                ));
            }
            Decision::Approve => {
                let target = ExecTarget {
                    name: format!("exec:{}", names.join(",")),
                    credentials: names.to_vec(),
                };
                let mut shown_params = BTreeMap::new();
                shown_params.insert(
                    "command".to_owned(),
                    ParamValue::String(command_name(&request.command)),
                );
                let variables: Vec<&str> = request
                    .credentials
                    .iter()
                    .map(|c| c.variable.as_str())
                    .collect();
                shown_params.insert(
                    "variables".to_owned(),
                    ParamValue::String(variables.join(",")),
                );
                self.hold_for_approval(&ws, &target, &Params(shown_params), &deciding, attempt)
                    .await?;
                // Keep the command in the record next to the approval note.
                let cmd = command_name(&request.command);
                attempt.record.reason = Some(match attempt.record.reason.take() {
                    Some(note) => format!("command `{cmd}`; {note}"),
                    None => format!("command `{cmd}`"),
                });
            }
        }

        // Rate limits count only requests policy let through.
        if let Some(rates) = self.config.policy.tenants.get(&ws.tenant).map(|t| &t.rate) {
            let now = chrono::Utc::now().timestamp();
            for n in names {
                let target = format!("exec:{n}");
                if let Some(hit) = self.rates.acquire(&ws.tenant, &target, rates, now)? {
                    attempt.record.decision = "deny".into();
                    attempt.record.rule = Some(hit.rule.clone());
                    return Err(Error::new(
                        ErrorKind::PolicyDenied,
                        format!(
                            "denied: the rate limit for `{target}` of tenant `{}` is used up; retry in {} s (rule: {})",
                            ws.tenant, hit.retry_after_secs, hit.rule
                        ),
                    ));
                }
            }
        }

        // 4. Credentials, for this tenant only.
        let credentials = self.exec_credentials(&ws.tenant, names).await?;
        let canaries = self.canaries().await;
        let redactor = self.redactor(&credentials, &canaries)?;
        let variables = request
            .credentials
            .iter()
            .map(|c| {
                let value = credentials.get(&c.name).cloned().ok_or_else(|| {
                    Error::internal(format!("credential `{}` was not resolved", c.name))
                })?;
                Ok((c.variable.clone(), value))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((ws, variables, canaries, redactor))
    }

    /// Fetches each named credential of `tenant`, honouring account pins. A pinned
    /// credential is probed as the first action or alias that uses it applies it (bearer
    /// when none does).
    async fn exec_credentials(&self, tenant: &str, names: &[String]) -> Result<Credentials> {
        // A pinned credential is probed the way the first action (else alias) using it
        // applies it.
        let auth_for = |name: &str| {
            self.config
                .actions
                .values()
                .filter(|a| a.credential.as_deref() == Some(name))
                .find_map(|a| a.auth.clone())
                .or_else(|| {
                    self.config
                        .aliases
                        .values()
                        .filter(|a| a.credential.as_deref() == Some(name))
                        .find_map(|a| a.auth.clone())
                })
                .unwrap_or(AuthConfig::Bearer)
        };
        self.resolve_named(tenant, names, "`outloop exec`", auth_for)
            .await
    }
}

/// The credential names of a request, in first-seen order, without repeats.
fn distinct_names(credentials: &[ExecCredential]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for c in credentials {
        if !names.contains(&c.name) {
            names.push(c.name.clone());
        }
    }
    names
}

/// argv\[0\] as recorded: at most [`MAX_COMMAND_CHARS`] characters, control characters as `?`.
fn command_name(command: &str) -> String {
    command
        .chars()
        .take(MAX_COMMAND_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
