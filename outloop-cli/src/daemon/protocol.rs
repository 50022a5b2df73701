//! The daemon's wire protocol, version 1: newline-delimited JSON over a Unix socket.
//!
//! A client sends one [`Request`] per line (UTF-8 JSON, no embedded newline, at most
//! [`MAX_REQUEST_BYTES`]) and reads [`Response`] lines until one is final (every body but
//! [`Body::Held`]); then it may send the next request on the same connection. Every line
//! carries `"v": 1`; a daemon answers a request of another version with a `usage` error.
//!
//! ```text
//! → {"v":1,"op":"call","action":"echo.bearer","params":{"limit":"5"},"tenant":null}
//! ← {"v":1,"type":"held","data":{"id":"…","action":"…",…}}        (only when held for approval)
//! ← {"v":1,"type":"call","data":{"action":"echo.bearer","tenant":"acme","status":200,…}}
//! → {"v":1,"op":"actions"}
//! ← {"v":1,"type":"error","data":{"kind":"unbound_workspace","message":"directory `/tmp` is not …"}}
//! ```
//!
//! The workspace of `call`, `request`, `actions` and `exec_start` is never sent: the daemon
//! takes it from the socket peer (its pid from `SO_PEERCRED`, then `/proc/<pid>/cwd`). Only
//! `explain` accepts an explicit `workspace`, as `outloop policy explain --workspace` does.
//!
//! `request` (an alias request, as the MCP `request` tool sends it) answers like `call`, with
//! `action` = `alias:<name>`.
//!
//! `exec_start` (`outloop exec`) runs the request flow up to the credentials and answers
//! `exec_started` with the values for the command's environment, base64 in JSON strings
//! ([`WireSecret`]), over the 0600 socket to a peer of the same uid; the daemon has written
//! the `started` audit record first. The connection then holds the exec session: the client
//! sends `exec_end` with how the command ended and the redactions it made, and the daemon
//! writes the closing record and answers `exec_ended`. When the connection closes first, the
//! daemon records the end with `outcome = "client_gone"`; when the daemon stops first, with
//! `outcome = "daemon_stopped"` (and closes the connection).
//!
//! ```text
//! → {"v":1,"op":"exec_start","credentials":[{"name":"echo","variable":"ECHO"}],"command":"sh","tenant":null}
//! ← {"v":1,"type":"exec_started","data":{"request_id":"…","tenant":"acme","floor":8,"variables":[{"variable":"ECHO","credential":"echo","value":"RkFLRS4uLg=="}]}}
//! → {"v":1,"op":"exec_end","exit":{"exited":0},"redactions":1}
//! ← {"v":1,"type":"exec_ended","data":{"request_id":"…"}}
//! ```
//!
//! The result types mirror the broker's (`CallResult`, `ActionInfo`, `Explanation`) field for
//! field and in the same order, so `outloop call --json` prints the same bytes whether the
//! daemon or the in-process broker ran the action. Errors carry the [`ErrorKind`] name
//! (`ErrorKind::as_str`), so exit codes are the same too.
//!
//! This file depends only on serde, serde_json and outloop-core so the e2e tests and the
//! daemon bench include it with `#[path]` and speak the same types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use outloop_core::approval::Approval;
use outloop_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The longest request line the daemon reads, in bytes (parameters are small).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The longest response line a client reads, in bytes: a 10 MiB body (the default response
/// cap) JSON-escaped at worst six bytes per byte, plus headers.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version, [`VERSION`].
    pub v: u32,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    /// A request of this build's version.
    pub fn new(op: Op) -> Self {
        Self { v: VERSION, op }
    }
}

/// The operations, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Perform an action for the peer's workspace (`outloop call`).
    Call {
        /// The action name.
        action: String,
        /// The parameters as given, name → value (strings from `-p key=value`).
        #[serde(default)]
        params: serde_json::Map<String, serde_json::Value>,
        /// The tenant the caller expects, if any.
        #[serde(default)]
        tenant: Option<String>,
    },
    /// The actions and aliases the peer's workspace may use (`outloop actions`).
    Actions,
    /// The decision for a request, with no backend call (`outloop policy explain`).
    Explain {
        /// The action name, or `alias:<name>`.
        action: String,
        /// The parameters as given.
        #[serde(default)]
        params: serde_json::Map<String, serde_json::Value>,
        /// An explicit workspace directory (canonical); the peer's working directory when
        /// absent.
        #[serde(default)]
        workspace: Option<PathBuf>,
        /// For `alias:<name>`: the request's HTTP method.
        #[serde(default)]
        method: Option<String>,
        /// For `alias:<name>`: the request's path below the alias base URL.
        #[serde(default)]
        path: Option<String>,
    },
    /// One HTTP request through an alias for the peer's workspace (the MCP `request` tool);
    /// answered with `call` (`action` = `alias:<name>`). Mirrors
    /// `outloop_core::broker::AliasRequest`.
    Request {
        /// The alias name (without `alias:`).
        alias: String,
        /// The HTTP method.
        method: String,
        /// The path below the alias's base URL, starting with `/`.
        path: String,
        /// The raw query string without `?`.
        #[serde(default)]
        query: Option<String>,
        /// The caller's headers, name and value (filtered by the broker).
        #[serde(default)]
        headers: Vec<(String, String)>,
        /// The request body as text (empty for none).
        #[serde(default)]
        body: String,
        /// The tenant the caller expects, if any.
        #[serde(default)]
        tenant: Option<String>,
    },
    /// Start an exec request for the peer's workspace (`outloop exec`): policy on
    /// `exec:<credential>`, the credentials, the `started` audit record. Answered with
    /// `exec_started`; the connection then waits for `exec_end`.
    ExecStart {
        /// The credentials and the variables they go in.
        credentials: Vec<ExecVariableSpec>,
        /// The command's argv\[0\] (never its arguments).
        command: String,
        /// The tenant the caller expects, if any.
        #[serde(default)]
        tenant: Option<String>,
    },
    /// How the command of the connection's exec session ended; the daemon writes the closing
    /// audit record and answers `exec_ended`.
    ExecEnd {
        /// How it ended.
        exit: ExecEndExit,
        /// Replacements the client made in the command's output.
        #[serde(default)]
        redactions: usize,
        /// Of those, the ones only a case-folded form of a secret hit.
        #[serde(default, skip_serializing_if = "is_zero")]
        folded: usize,
        /// The tenants whose canary (from `exec_started`) the output held.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        canaries: Vec<String>,
    },
    /// The daemon's own state (`outloop status`).
    Status,
    /// Reload the host config, as SIGHUP does; a bad config is refused and the old one kept.
    Reload,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The protocol version, [`VERSION`].
    pub v: u32,
    /// The answer.
    #[serde(flatten)]
    pub body: Body,
}

impl Response {
    /// A response of this build's version.
    pub fn new(body: Body) -> Self {
        Self { v: VERSION, body }
    }
}

/// The answers, tagged by `type` with the payload under `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Body {
    /// Not final: the call is held for a human's approval (the pending approval).
    Held(Approval),
    /// The redacted result of `call`.
    Call(CallOutput),
    /// The answer to `actions`.
    Actions(ActionsOutput),
    /// The answer to `explain`.
    Explain(ExplainOutput),
    /// The answer to `status`.
    Status(StatusOutput),
    /// The answer to `reload`: the config now in use.
    Reloaded(ReloadOutput),
    /// The answer to `exec_start`: the values for the command's environment.
    ExecStarted(ExecStarted),
    /// The answer to `exec_end`: the closing audit record is on disk.
    ExecEnded(ExecEnded),
    /// The request failed; the kind decides the exit code.
    Error(WireError),
}

/// The redacted result of an action; the object `outloop call --json` prints. Mirrors
/// `outloop_core::broker::CallResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOutput {
    /// The action name.
    pub action: String,
    /// The tenant it ran for.
    pub tenant: String,
    /// The upstream HTTP status.
    pub status: u16,
    /// The redacted status text.
    pub status_text: String,
    /// Redacted response headers, lower-case name → value.
    pub headers: BTreeMap<String, String>,
    /// The redacted body as text.
    pub body: String,
    /// How many secret occurrences were replaced.
    pub redactions: usize,
}

impl From<outloop_core::broker::CallResult> for CallOutput {
    fn from(r: outloop_core::broker::CallResult) -> Self {
        Self {
            action: r.action,
            tenant: r.tenant,
            status: r.status,
            status_text: r.status_text,
            headers: r.headers,
            body: r.body,
            redactions: r.redactions,
        }
    }
}

/// One entry of `outloop actions`. Mirrors `outloop_core::broker::ActionInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionEntry {
    /// The action name, or `alias:<name>`.
    pub name: String,
    /// `action` or `alias`.
    pub kind: String,
    /// One line.
    pub description: String,
    /// `allow` or `approve`.
    pub decision: String,
    /// The JSON Schema of the parameters (actions only; `null` for aliases).
    pub params: serde_json::Value,
    /// For aliases: the alias's own `allow` rules (`METHOD /glob`), which the MCP `request`
    /// tool shows; absent for actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

impl ActionEntry {
    /// The entries for `list`, alias entries with their `allow` rules from `config`.
    pub fn all_from(
        list: Vec<outloop_core::broker::ActionInfo>,
        config: &outloop_core::config::HostConfig,
    ) -> Vec<ActionEntry> {
        list.into_iter()
            .map(|a| {
                let mut e = ActionEntry::from(a);
                if e.kind == "alias"
                    && let Some(alias) = e
                        .name
                        .strip_prefix("alias:")
                        .and_then(|n| config.aliases.get(n))
                {
                    e.allow = alias.allow.clone();
                }
                e
            })
            .collect()
    }
}

impl From<outloop_core::broker::ActionInfo> for ActionEntry {
    fn from(a: outloop_core::broker::ActionInfo) -> Self {
        Self {
            name: a.name,
            kind: a.kind,
            description: a.description,
            decision: a.decision,
            params: a.params,
            allow: Vec::new(),
        }
    }
}

/// The answer to `actions`: the workspace root, its tenant and what it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionsOutput {
    /// The bound workspace root that matched.
    pub workspace: PathBuf,
    /// Its tenant.
    pub tenant: String,
    /// The actions and aliases, sorted by name.
    pub actions: Vec<ActionEntry>,
}

/// The answer to `explain`. Mirrors `outloop_core::broker::Explanation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainOutput {
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
    /// The rate limits that apply, with their current use.
    pub rates: Vec<String>,
}

impl From<outloop_core::broker::Explanation> for ExplainOutput {
    fn from(e: outloop_core::broker::Explanation) -> Self {
        Self {
            action: e.action,
            workspace: e.workspace,
            tenant: e.tenant,
            decision: e.decision,
            rule: e.rule,
            reason: e.reason,
            rates: e.rates,
        }
    }
}

/// The daemon's state, as `outloop status --json` prints it (with `running: true` added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusOutput {
    /// The daemon's process id.
    pub pid: u32,
    /// The socket it listens on.
    pub socket: PathBuf,
    /// The host config file it runs on.
    pub config: PathBuf,
    /// The `outloop` version of the daemon.
    pub version: String,
    /// The protocol version it speaks.
    pub protocol: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Requests answered (`call`, `request`, `actions`, `explain`, `exec_start`), whatever
    /// their outcome.
    pub requests: u64,
    /// Requests being answered right now (this `status` excluded).
    pub in_flight: u64,
    /// Successful config reloads (SIGHUP or `reload`).
    pub reloads: u64,
}

/// The answer to `reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutput {
    /// The host config file now in use.
    pub config: PathBuf,
    /// How many actions it defines.
    pub actions: usize,
}

/// One credential of an exec request and the variable it goes in. Mirrors
/// `outloop_core::broker::ExecCredential`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecVariableSpec {
    /// The credential name.
    pub name: String,
    /// The environment variable.
    pub variable: String,
}

/// How an exec'd command ended. Mirrors `outloop_core::broker::ExecExit` (without `Unknown`,
/// which only the daemon records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecEndExit {
    /// It exited with this status code.
    Exited(i32),
    /// This signal number ended it.
    Signaled(i32),
    /// It could not be started: the error kind's name and a one-line message.
    NotStarted {
        /// `ErrorKind::as_str`, e.g. `not_found`.
        kind: String,
        /// The one-line message (no secret).
        message: String,
    },
}

/// A secret value on the wire: standard base64 (RFC 4648 section 4) in a JSON string.
///
/// Encoding goes through a zeroizing buffer; decoding reads the string borrowed from the
/// caller's line buffer (base64 needs no JSON escape) into a
/// [`SecretValue`](outloop_core::SecretValue). `Debug` shows the length only.
#[derive(Clone, PartialEq, Eq)]
pub struct WireSecret(pub outloop_core::SecretValue);

impl std::fmt::Debug for WireSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireSecret([REDACTED; {} bytes])", self.0.len())
    }
}

impl Serialize for WireSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        let len = base64::encoded_len(self.0.len(), true).unwrap_or(0);
        let mut text = zeroize::Zeroizing::new(String::with_capacity(len));
        engine.encode_string(self.0.expose_secret(), &mut text);
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for WireSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = WireSecret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WireSecret, E> {
                use base64::Engine as _;
                let engine = &base64::engine::general_purpose::STANDARD;
                let mut out = zeroize::Zeroizing::new(Vec::with_capacity(v.len() / 4 * 3 + 3));
                // The message names the position only, never the text.
                engine
                    .decode_vec(v, &mut out)
                    .map_err(|_| E::custom("a secret value is not valid base64"))?;
                Ok(WireSecret(outloop_core::SecretValue::new(std::mem::take(
                    &mut *out,
                ))))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<WireSecret, E> {
                let v = zeroize::Zeroizing::new(v);
                self.visit_str(&v)
            }
        }
        d.deserialize_str(V)
    }
}

/// One variable for the command's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecVariable {
    /// The environment variable.
    pub variable: String,
    /// The credential it holds (the label redaction uses: `[REDACTED:<credential>]`).
    pub credential: String,
    /// The value.
    pub value: WireSecret,
}

/// The answer to `exec_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    /// The audit request id both records of this exec request carry.
    pub request_id: String,
    /// The tenant the command runs for.
    pub tenant: String,
    /// The host config's redaction floor in bytes (`[redaction] floor`), for the client's
    /// redactor.
    pub floor: usize,
    /// The variables, in request order.
    pub variables: Vec<ExecVariable>,
    /// Every tenant's canaries (`[tenants.<name>] canaries`, planted fakes), for the client's
    /// redactor: a canary in the command's output is redacted and reported in `exec_end`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<ExecCanary>,
}

/// A canary the client's redactor registers (`RedactorBuilder::add_canary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCanary {
    /// The tenant it was planted for.
    pub tenant: String,
    /// The planted value.
    pub value: WireSecret,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The answer to `exec_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEnded {
    /// The request id of the closing record.
    pub request_id: String,
}

/// An error on the wire: the kind's stable name and the one-line message (never a secret:
/// it is the broker's own `Error` message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `ErrorKind::as_str`, e.g. `policy_denied`.
    pub kind: String,
    /// The one-line message.
    pub message: String,
    /// For `rate_limited`: how long to wait, in seconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        let retry_after_secs = match e.kind() {
            ErrorKind::RateLimited { retry_after } => retry_after.map(|d| d.as_secs()),
            _ => None,
        };
        Self {
            kind: e.kind().as_str().to_owned(),
            message: e.message().to_owned(),
            retry_after_secs,
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        Error::new(kind_from_str(&w.kind, w.retry_after_secs), w.message)
    }
}

/// The [`ErrorKind`] named `name` (the inverse of `ErrorKind::as_str`); an unknown name, from
/// a newer daemon, reads as [`ErrorKind::Internal`].
pub fn kind_from_str(name: &str, retry_after_secs: Option<u64>) -> ErrorKind {
    match name {
        "config" => ErrorKind::Config,
        "usage" => ErrorKind::Usage,
        "invalid_reference" => ErrorKind::InvalidReference,
        "invalid_parameter" => ErrorKind::InvalidParameter,
        "unknown_action" => ErrorKind::UnknownAction,
        "unbound_workspace" => ErrorKind::UnboundWorkspace,
        "policy_denied" => ErrorKind::PolicyDenied,
        "approval_required" => ErrorKind::ApprovalRequired,
        "not_found" => ErrorKind::NotFound,
        "unauthenticated" => ErrorKind::Unauthenticated,
        "permission_denied" => ErrorKind::PermissionDenied,
        "rate_limited" => ErrorKind::RateLimited {
            retry_after: retry_after_secs.map(Duration::from_secs),
        },
        "unavailable" => ErrorKind::Unavailable,
        "timeout" => ErrorKind::Timeout,
        "upstream_unreachable" => ErrorKind::UpstreamUnreachable,
        "safety_refused" => ErrorKind::SafetyRefused,
        "invalid_secret" => ErrorKind::InvalidSecret,
        "audit" => ErrorKind::Audit,
        "io" => ErrorKind::Io,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_survives_the_wire() {
        let kinds = [
            ErrorKind::Config,
            ErrorKind::Usage,
            ErrorKind::InvalidReference,
            ErrorKind::InvalidParameter,
            ErrorKind::UnknownAction,
            ErrorKind::UnboundWorkspace,
            ErrorKind::PolicyDenied,
            ErrorKind::ApprovalRequired,
            ErrorKind::NotFound,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            },
            ErrorKind::RateLimited { retry_after: None },
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::UpstreamUnreachable,
            ErrorKind::SafetyRefused,
            ErrorKind::InvalidSecret,
            ErrorKind::Audit,
            ErrorKind::Io,
            ErrorKind::Internal,
        ];
        for k in kinds {
            let e = Error::new(k, "one line");
            let line =
                serde_json::to_string(&Response::new(Body::Error(WireError::from(&e)))).unwrap();
            let back: Response = serde_json::from_str(&line).unwrap();
            let Body::Error(w) = back.body else {
                panic!("not an error: {line}")
            };
            let e2 = Error::from(w);
            assert_eq!(e2.kind(), k, "{line}");
            assert_eq!(e2.kind().exit_code(), k.exit_code());
            assert_eq!(e2.message(), "one line");
        }
    }

    #[test]
    fn requests_and_responses_have_the_documented_shape() {
        let r = Request::new(Op::Call {
            action: "echo.bearer".into(),
            params: serde_json::from_str(r#"{"limit":"5"}"#).unwrap(),
            tenant: None,
        });
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"op":"call","action":"echo.bearer","params":{"limit":"5"},"tenant":null}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let minimal: Request = serde_json::from_str(r#"{"v":1,"op":"actions"}"#).unwrap();
        assert_eq!(minimal.op, Op::Actions);
        assert!(serde_json::from_str::<Request>(r#"{"v":1,"op":"nope"}"#).is_err());

        let resp = Response::new(Body::Reloaded(ReloadOutput {
            config: "/h/config.toml".into(),
            actions: 3,
        }));
        let line = serde_json::to_string(&resp).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"type":"reloaded","data":{"config":"/h/config.toml","actions":3}}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), resp);
    }

    #[test]
    fn mirrors_print_the_same_bytes_as_the_broker_types() {
        let core = outloop_core::broker::CallResult {
            action: "a".into(),
            tenant: "acme".into(),
            status: 200,
            status_text: "OK".into(),
            headers: [("content-type".to_owned(), "text/plain".to_owned())].into(),
            body: "hi \"there\"\n".into(),
            redactions: 2,
        };
        let wire = CallOutput::from(core.clone());
        assert_eq!(
            serde_json::to_string(&core).unwrap(),
            serde_json::to_string(&wire).unwrap()
        );
        let core = outloop_core::broker::Explanation {
            action: "a".into(),
            workspace: "/w".into(),
            tenant: "acme".into(),
            decision: "deny".into(),
            rule: "r".into(),
            reason: "why".into(),
            rates: vec!["x: 1 of 2 used".into()],
        };
        let wire = ExplainOutput::from(core.clone());
        assert_eq!(
            serde_json::to_string(&core).unwrap(),
            serde_json::to_string(&wire).unwrap()
        );
        let core = outloop_core::broker::ActionInfo {
            name: "a".into(),
            kind: "action".into(),
            description: "d".into(),
            decision: "allow".into(),
            params: serde_json::json!({"type": "object", "properties": {"b": {}, "a": {}}}),
        };
        let wire = ActionEntry::from(core.clone());
        let through: ActionEntry =
            serde_json::from_str(&serde_json::to_string(&wire).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_string(&core).unwrap(),
            serde_json::to_string(&through).unwrap()
        );
    }

    #[test]
    fn exec_values_cross_the_wire_as_base64_and_never_show_in_debug() {
        const FAKE: &[u8] = b"FAKE-exec-value-\x00\xff-not-utf8";
        let started = ExecStarted {
            request_id: "r1".into(),
            tenant: "acme".into(),
            floor: 8,
            variables: vec![ExecVariable {
                variable: "ECHO".into(),
                credential: "echo".into(),
                value: WireSecret(outloop_core::SecretValue::new(FAKE.to_vec())),
            }],
            canaries: vec![],
        };
        let resp = Response::new(Body::ExecStarted(started.clone()));
        let line = serde_json::to_string(&resp).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(FAKE);
        assert_eq!(
            line,
            format!(
                r#"{{"v":1,"type":"exec_started","data":{{"request_id":"r1","tenant":"acme","floor":8,"variables":[{{"variable":"ECHO","credential":"echo","value":"{b64}"}}]}}}}"#
            )
        );
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back, resp);
        let Body::ExecStarted(b) = back.body else {
            panic!("not exec_started")
        };
        assert_eq!(b.variables[0].value.0.expose_secret(), FAKE);
        // Debug shows the length, never the value or its encoding.
        let debug = format!("{resp:?} {b:?}");
        assert!(
            debug.contains(&format!("[REDACTED; {} bytes]", FAKE.len())),
            "{debug}"
        );
        assert!(!debug.contains("FAKE") && !debug.contains(&b64), "{debug}");
        // Bad base64 is refused without echoing the text.
        let bad = line.replace(&b64, "FAKE-not-base64!");
        let e = serde_json::from_str::<Response>(&bad)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("FAKE"), "{e}");
    }

    #[test]
    fn exec_and_request_ops_have_the_documented_shape() {
        let r = Request::new(Op::ExecStart {
            credentials: vec![ExecVariableSpec {
                name: "echo".into(),
                variable: "ECHO".into(),
            }],
            command: "sh".into(),
            tenant: None,
        });
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"v":1,"op":"exec_start","credentials":[{"name":"echo","variable":"ECHO"}],"command":"sh","tenant":null}"#
        );
        for (exit, json) in [
            (ExecEndExit::Exited(0), r#"{"exited":0}"#),
            (ExecEndExit::Signaled(9), r#"{"signaled":9}"#),
            (
                ExecEndExit::NotStarted {
                    kind: "not_found".into(),
                    message: "no such file".into(),
                },
                r#"{"not_started":{"kind":"not_found","message":"no such file"}}"#,
            ),
        ] {
            let r = Request::new(Op::ExecEnd {
                exit,
                redactions: 1,
                folded: 0,
                canaries: vec![],
            });
            let line = serde_json::to_string(&r).unwrap();
            assert_eq!(
                line,
                format!(r#"{{"v":1,"op":"exec_end","exit":{json},"redactions":1}}"#)
            );
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        // A minimal alias request: the optional fields default.
        let r: Request = serde_json::from_str(
            r#"{"v":1,"op":"request","alias":"bin","method":"GET","path":"/bearer"}"#,
        )
        .unwrap();
        assert_eq!(
            r.op,
            Op::Request {
                alias: "bin".into(),
                method: "GET".into(),
                path: "/bearer".into(),
                query: None,
                headers: vec![],
                body: String::new(),
                tenant: None,
            }
        );
        // Alias entries carry their allow rules; action entries print as before.
        let alias = ActionEntry {
            name: "alias:bin".into(),
            kind: "alias".into(),
            description: String::new(),
            decision: "allow".into(),
            params: serde_json::Value::Null,
            allow: vec!["GET /bearer".into()],
        };
        let v = serde_json::to_value(&alias).unwrap();
        assert_eq!(v["allow"], serde_json::json!(["GET /bearer"]));
    }
}
