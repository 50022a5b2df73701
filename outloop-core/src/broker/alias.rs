//! Alias requests: the request flow of DESIGN.md for one request through
//! `[aliases.<name>]`, used by the alias proxy, the MCP `request` tool and the FFI.
//!
//! Steps, as for actions: workspace → tenant (a named tenant other than the workspace's is
//! denied) → policy on target `alias:<name>` with the request's method and path (the tenant's
//! rules, then the alias's own `allow = ["METHOD /glob"]` rules; approvals and rate limits as
//! for actions) → the alias's credential, for this tenant only → send below the pinned base URL
//! with the credential applied as `auth` says → redact status text, headers and the body while
//! it streams → audit → return.
//!
//! The method, path and query are checked before policy and before any backend read (see
//! [`crate::http::check_path`]), so a request that could leave the base URL never gets a
//! credential. The audit record is written once the response head has arrived (or the request
//! failed), before the response is returned: it holds the target, the method and path
//! (`request`), the status and the redactions made in the status text and headers, never the
//! query or the body. A body that fails later (size cap, broken connection) ends the stream
//! with an error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{Attempt, Broker, CallResult};
use crate::action::{Credentials, ParamValue, Params};
use crate::audit::{AuditRecord, AuditSink};
use crate::config::{AuthConfig, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_SECS};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{self, HttpAlias, Outgoing};
use crate::policy::{Decision, PolicyRequest, Target};
use crate::redact::{RedactStream, Redactor};

/// One request through an alias: `[aliases.<alias>]` in the host config.
#[derive(Debug, Clone, Default)]
pub struct AliasRequest {
    /// The directory the request comes from, as [`super::CallRequest::workspace`].
    pub workspace: PathBuf,
    /// The tenant the caller names, if any; another tenant than the workspace's is denied.
    pub tenant: Option<String>,
    /// The alias name (without `alias:`).
    pub alias: String,
    /// The HTTP method: one of `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` (any case).
    pub method: String,
    /// The path below the alias's base URL, starting with `/`. Percent escapes are kept as
    /// given; `.`/`..` segments (also encoded), empty segments, encoded `/` or `\` and
    /// backslashes are refused.
    pub path: String,
    /// The raw query string without `?`, passed through as given.
    pub query: Option<String>,
    /// The agent's headers, name and value. `Authorization`, `Cookie`, `Proxy-*`,
    /// hop-by-hop headers, `Host`, `Content-Length`, `Expect` and `Accept-Encoding` are
    /// dropped, as is the header the alias's `auth` places the credential in.
    pub headers: Vec<(String, String)>,
    /// The request body bytes (empty for none).
    pub body: Vec<u8>,
}

/// A redacted response body, streamed: each upstream chunk is redacted as it arrives and
/// released at once, except for the shortest tail that could still begin a secret, which is
/// held until the next chunk shows whether it does.
///
/// Yields `Err` (and then ends) when the body exceeds the tenant's `max_response_bytes`
/// ([`ErrorKind::SafetyRefused`]) or the upstream connection fails
/// ([`ErrorKind::UpstreamUnreachable`]); what was yielded before stays valid but the body is
/// incomplete.
pub struct AliasBody {
    inner: crate::action::BodyStream,
    session: Box<dyn RedactStream + Send>,
    redactions: usize,
    done: bool,
    /// Where the body's findings go when it ends: see [`BodyReport`].
    report: Option<BodyReport>,
}

/// The follow-up audit record of an alias body. The request's record is written when the
/// head arrives, before the body streams; when the body then turns out to hold a canary or a
/// case-folded-only secret, a second record with the same `request_id` (`reason` = `response
/// body`, `redactions` = the body's count) carries `folded`, `canaries` and `alert`. It is
/// appended once, when the body ends, fails or is dropped, on a blocking task (the body has
/// already been released, so nothing waits for it). A body with nothing to report writes no
/// second record.
struct BodyReport {
    audit: Arc<dyn AuditSink>,
    record: AuditRecord,
}

impl AliasBody {
    /// Sends the follow-up record, at most once, if the body found anything to report.
    fn report(&mut self) {
        let Some(BodyReport { audit, mut record }) = self.report.take() else {
            return;
        };
        let found = self.session.findings();
        if found.folded == 0 && found.canaries.is_empty() {
            return;
        }
        record.reason = Some("response body".into());
        record.redactions = self.redactions;
        record.folded = 0;
        record.canaries.clear();
        record.alert = None;
        record.note_findings(found.folded, &found.canaries, "the response body");
        super::warn_on_alert(&record);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                request_id = %record.request_id,
                "no runtime to append the alias body's audit record on"
            );
            return;
        };
        rt.spawn_blocking(move || {
            if let Err(e) = audit.append(&mut record) {
                tracing::warn!(
                    request_id = %record.request_id,
                    error = %e,
                    "the alias body's audit record could not be written"
                );
            }
        });
    }
}

impl Drop for AliasBody {
    fn drop(&mut self) {
        self.report();
    }
}

impl fmt::Debug for AliasBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AliasBody")
            .field("redactions", &self.redactions)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl AliasBody {
    /// How many secret occurrences were replaced in the body so far.
    pub fn redactions(&self) -> usize {
        self.redactions
    }
}

impl Stream for AliasBody {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    let mut out = Vec::new();
                    this.redactions += this.session.finish(&mut out);
                    this.report();
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Bytes::from(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    // The held tail is dropped unreleased: the session zeroizes it.
                    this.report();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    let mut out = Vec::new();
                    this.redactions += this.session.push(&chunk, &mut out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
            }
        }
    }
}

/// The response to an alias request; status text and headers already redacted, the body
/// redacted while it streams.
#[derive(Debug)]
pub struct AliasResponse {
    /// The upstream HTTP status.
    pub status: u16,
    /// The redacted status text (reason phrase; may be empty).
    pub status_text: String,
    /// Redacted response headers in the order received, names lower-case. Hop-by-hop
    /// headers and `Content-Length` (redaction changes the length) are left out, as are
    /// `Content-Encoding` and the encoded length once the body was decoded.
    pub headers: Vec<(String, String)>,
    /// The redacted body.
    pub body: AliasBody,
    /// Replacements made in the status text and headers.
    head_redactions: usize,
}

impl AliasResponse {
    /// How many secret occurrences were replaced in the status text and headers (the body
    /// counts its own: [`AliasBody::redactions`]).
    pub fn head_redactions(&self) -> usize {
        self.head_redactions
    }

    /// Reads the whole body (capped as it streams) and returns the object `outloop call
    /// --json` prints, with `action` = `alias:<alias>` and `tenant` as given. Repeated headers
    /// are joined by `, `; the body is text (invalid UTF-8 replaced by U+FFFD).
    ///
    /// # Errors
    ///
    /// What the body stream yields ([`ErrorKind::SafetyRefused`] over the size cap,
    /// [`ErrorKind::UpstreamUnreachable`]); [`ErrorKind::Timeout`] when no chunk arrives for
    /// 30 s. Nothing partial is returned.
    pub async fn collect(self, alias: &str, tenant: &str) -> Result<CallResult> {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in self.headers {
            headers
                .entry(name)
                .and_modify(|old| {
                    old.push_str(", ");
                    old.push_str(&value);
                })
                .or_insert(value);
        }
        let mut body = Vec::new();
        let mut stream = self.body;
        let idle = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
        loop {
            let next = tokio::time::timeout(idle, stream.next())
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "alias `{alias}`: the response body stalled for {} s",
                            idle.as_secs()
                        ),
                    )
                })?;
            match next {
                Some(chunk) => body.extend_from_slice(&chunk?),
                None => break,
            }
        }
        Ok(CallResult {
            action: format!("alias:{alias}"),
            tenant: tenant.to_owned(),
            status: self.status,
            status_text: self.status_text,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            redactions: self.head_redactions + stream.redactions(),
        })
    }
}

/// Response headers that describe the upstream connection or the unredacted body's framing.
const DROPPED_RESPONSE: [&str; 7] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Broker {
    /// Steps 1–8 of the request flow for an alias: workspace → tenant → policy (target
    /// `alias:<name>`, plus the alias's own `allow = ["METHOD /glob"]` rules) → credential →
    /// send to `base_url` + path → redact → audit.
    ///
    /// The response head is returned as soon as it arrives; the body streams through the
    /// redactor (see [`AliasBody`]), capped at the tenant's `max_response_bytes` (default
    /// 10 MiB). Waiting for the response head is bounded by 30 s; the body is not, so
    /// server-sent events can stream for as long as the caller reads.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::UnboundWorkspace`]: the directory is in no bound workspace.
    /// - [`ErrorKind::PolicyDenied`]: the request names another tenant, policy denied it, the
    ///   method and path match none of the alias's `allow` rules, or a rate limit is used up.
    /// - [`ErrorKind::ApprovalRequired`]: policy holds it for a human who did not answer.
    /// - [`ErrorKind::UnknownAction`]: no such alias.
    /// - [`ErrorKind::InvalidParameter`]: a bad method, path, query or header (named).
    /// - [`ErrorKind::Config`]: the tenant has no entry for the alias's credential.
    /// - the backend kinds, [`ErrorKind::InvalidSecret`], as for [`Broker::call`].
    /// - [`ErrorKind::SafetyRefused`], [`ErrorKind::UpstreamUnreachable`],
    ///   [`ErrorKind::Timeout`]: the upstream call failed or was refused.
    /// - [`ErrorKind::Audit`]: the attempt could not be audited; no response is returned.
    ///
    /// Everything but a malformed-request error is decided before any backend read; every
    /// attempt is audited before it returns. No message contains a secret.
    /// Dropping the returned future before it completes (its caller went away) appends the
    /// attempt's record as it drops, with `outcome = "cancelled"`.
    pub async fn request(&self, request: AliasRequest) -> Result<AliasResponse> {
        let target = format!("alias:{}", super::shown(&request.alias, 100));
        let mut attempt = Attempt::new(&request.workspace, &target, &self.audit);
        attempt.record.request = Some(format!(
            "{} {}",
            super::shown(&request.method, 10),
            super::shown(&request.path, 300)
        ));
        let mut outcome = self.run_alias(&request, &mut attempt).await;
        let rec = &mut attempt.record;
        rec.duration_ms = u64::try_from(attempt.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &mut outcome {
            Ok(r) => {
                rec.outcome = "ok".into();
                rec.status = Some(r.status);
                rec.redactions = r.head_redactions;
                r.body.report = Some(BodyReport {
                    audit: Arc::clone(&self.audit),
                    record: rec.clone(),
                });
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
        super::warn_on_alert(&attempt.record);
        self.append_audit(attempt.take_record()).await?;
        outcome
    }

    async fn run_alias(
        &self,
        request: &AliasRequest,
        attempt: &mut Attempt,
    ) -> Result<AliasResponse> {
        // 1–2. Workspace and tenant.
        let ws = self.identify(&request.workspace, request.tenant.as_deref(), Some(attempt))?;
        let name = request.alias.as_str();
        let cfg = self.config.aliases.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownAction,
                format!(
                    "no alias `{}` in the host config (see `outloop actions`)",
                    super::shown(name, 100)
                ),
            )
        })?;
        // The request is checked before policy: a path that could leave the base URL is
        // refused as such, and none of this touches a backend.
        let method = http::check_method(&request.method)?;
        http::check_path(&request.path)?;
        if let Some(q) = &request.query {
            http::check_query(q)?;
        }
        attempt.record.request = Some(format!("{method} {}", request.path));
        let alias = HttpAlias::new(name, cfg, self.client.clone())?;

        // 3. Decide.
        let target = Target::Alias {
            name,
            method,
            path: &request.path,
        };
        let policy_name = target.policy_name();
        let mut canonical = BTreeMap::new();
        canonical.insert("path".to_owned(), ParamValue::String(request.path.clone()));
        if let Some(q) = request.query.as_ref().filter(|q| !q.is_empty()) {
            canonical.insert("query".to_owned(), ParamValue::String(q.clone()));
        }
        if !request.body.is_empty() {
            use sha2::{Digest, Sha256};
            canonical.insert(
                "body_sha256".to_owned(),
                ParamValue::String(hex::encode(Sha256::digest(&request.body))),
            );
        }
        let params = Params(canonical);
        let verdict = self.policy.decide(&PolicyRequest {
            workspace: &ws.root,
            tenant: &ws.tenant,
            target,
            method,
            params: &Params::default(),
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
                self.hold(&ws, &policy_name, method, &params, &verdict, attempt)
                    .await?;
            }
        }

        // Rate limits count only requests policy let through.
        let tenant_policy = self.config.policy.tenants.get(&ws.tenant);
        if let Some(rates) = tenant_policy.map(|t| &t.rate) {
            let now = chrono::Utc::now().timestamp();
            if let Some(hit) = self.rates.acquire(&ws.tenant, &policy_name, rates, now)? {
                attempt.record.decision = "deny".into();
                attempt.record.rule = Some(hit.rule.clone());
                return Err(Error::new(
                    ErrorKind::PolicyDenied,
                    format!(
                        "denied: the rate limit for `{policy_name}` of tenant `{}` is used up; retry in {} s (rule: {})",
                        ws.tenant, hit.retry_after_secs, hit.rule
                    ),
                ));
            }
        }
        let cap = tenant_policy
            .and_then(|t| t.max_response_bytes)
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);

        // 4. The alias's credential, for this tenant only.
        let credentials = match alias.credential() {
            Some(c) => {
                self.resolve_named(
                    &ws.tenant,
                    &[c.to_owned()],
                    &format!("alias `{name}`"),
                    |_: &str| cfg.auth.clone().unwrap_or(AuthConfig::Bearer),
                )
                .await?
            }
            None => Credentials::new(),
        };

        // 6 (prepared). The redactor knows the credential, every backend token and every
        // tenant's canaries.
        let redactor = self.redactor_for(&credentials).await?;

        // 5. Send.
        let secret = alias.credential().and_then(|c| credentials.get(c));
        let response = alias
            .send(
                Outgoing {
                    method,
                    path: &request.path,
                    query: request.query.as_deref(),
                    headers: &request.headers,
                    body: &request.body,
                },
                secret,
                cap,
                Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            )
            .await?;
        drop(credentials);

        // 6. Redact the head now and the body while it streams.
        let mut head_redactions = 0;
        let status_text = {
            let r = redactor.redact(response.status_text.as_bytes());
            head_redactions += r.count;
            attempt
                .record
                .note_findings(r.folded, &r.canaries, super::RESPONSE);
            String::from_utf8_lossy(&r.output).into_owned()
        };
        let mut headers = Vec::with_capacity(response.headers.len());
        for (name, value) in &response.headers {
            if DROPPED_RESPONSE.contains(&name.as_str()) {
                continue;
            }
            let n = redactor.redact(name.as_bytes());
            let v = redactor.redact(value);
            head_redactions += n.count + v.count;
            for found in [&n, &v] {
                attempt
                    .record
                    .note_findings(found.folded, &found.canaries, super::RESPONSE);
            }
            headers.push((
                String::from_utf8_lossy(&n.output).into_owned(),
                String::from_utf8_lossy(&v.output).into_owned(),
            ));
        }
        Ok(AliasResponse {
            status: response.status,
            status_text,
            headers,
            body: AliasBody {
                inner: response.body,
                session: redactor.stream(),
                redactions: 0,
                done: false,
                report: None,
            },
            head_redactions,
        })
    }
}
