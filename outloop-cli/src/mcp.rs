//! `outloop mcp`: a Model Context Protocol server on stdio for one workspace.
//!
//! The agent starts `outloop mcp` in its workspace (or with `--workspace DIR`); the server
//! speaks MCP over stdin/stdout with the official Rust SDK, [rmcp](https://docs.rs/rmcp)
//! 3.11 (protocol versions up to 2026-07-28, stdio transport). Stdout carries only protocol
//! messages; every log line goes to stderr. A message longer than the SDK's line limit
//! (`rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH`, 16 MiB) is dropped unread, with one
//! line on stderr; it gets no reply, since its id is never parsed, and the session goes on.
//! No tool takes input anywhere near that size.
//!
//! # Tools
//!
//! One tool per action the workspace's tenant may call ([`Broker::actions_for`]: allowed, or
//! held for a human's approval). Its description is the action's description and its input
//! schema is the JSON Schema of the action's parameters (types, `enum`, `pattern`,
//! `minimum`/`maximum`, `maxLength`, `default`, `required`, no additional properties).
//! A call runs the whole request flow in a [`Broker`]: policy, credential, upstream call,
//! redaction, audit. Each request (a tool list, a policy check, a call) goes to the per-user
//! daemon when one answers on its socket (a new connection per request, so a daemon started
//! or stopped during a session is picked up by the next request), else to this process's
//! own broker, built on first use; the tools and results are the same either way. The daemon
//! takes the workspace from this process's working directory, so `--workspace DIR` changes
//! into `DIR` first. The result is one text block holding the object
//! `outloop call --json` prints (`action`, `tenant`, `status`, `headers`, `body`,
//! `redactions`), already redacted.
//!
//! One more tool, `request`, is listed when the tenant may use at least one alias: an HTTP
//! request through an alias (`[aliases.<name>]`, a pinned upstream) with the arguments `alias`
//! (one of the allowed aliases), `method`, `path` (below the alias's base URL), `query` (raw,
//! without `?`) and `body` (text, or any JSON value, which is sent as JSON). The alias's own
//! `allow = ["METHOD /glob"]` rules and policy on `alias:<name>` decide
//! ([`Broker::request`]); the result has the same shape, with `action` = `alias:<name>`. An
//! action named `request` gets no tool while this tool is listed.
//!
//! Denials and every other failure are tool results with `isError: true` whose text names the
//! error kind, says why, and says what the human can do. A request that policy holds for
//! approval returns at once as an error naming the approval id (`outloop approve <id>`, run by
//! the human from outside the workspace); the request keeps waiting in this process, and
//! calling the tool again with the same arguments returns its result once it ran.
//!
//! # Tool names
//!
//! MCP allows `A-Z a-z 0-9 _ - .` in tool names (1 to 128 characters), but the model APIs
//! behind the agents do not take dots in function names (Anthropic and OpenAI accept
//! `^[a-zA-Z0-9_-]+$`). Action names use dots as separators, so [`tool_name`] maps each `.` to
//! `__` (`hubspot.contacts.list` → `hubspot__contacts__list`) and [`action_name`] maps every
//! `__` back to `.`. The map is reversible for every action name in which no `_` stands next to
//! a `.` or another `_`; other names (and names whose tool name would pass 128 characters) get
//! no tool, with one line on stderr saying so.
//!
//! # Config reloads
//!
//! The server polls the host config file and the files its `include` globs match every
//! [`POLL_INTERVAL`] (modification time, size and inode). On a change it loads the config
//! (and rebuilds its own broker, if it has one), then asks for the tools again, from the
//! daemon when one answers (the daemon re-stats the same files before each request and
//! reloads first); when the tool list differs from the last one seen it sends
//! `notifications/tools/list_changed`
//! (in the session for clients that connected with `initialize`, and on every
//! `subscriptions/listen` stream that asked for tool changes, for protocol 2026-07-28).
//! A config that does not load keeps the previous broker and logs one line on stderr. Polling
//! is chosen over file-system events (the `notify` crate): the config is a handful of small
//! files, a few `stat` calls twice a second cost nothing, editors that save by renaming a new
//! file over the old one (vim, `outloop bind` itself) need no re-arming of watches, and the
//! config directory also holds the audit log and vault, whose constant changes a directory
//! watch would wake on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use outloop_core::action::RawParams;
use outloop_core::approval::Approval;
use outloop_core::broker::{ActionInfo, AliasRequest, Broker, CallRequest, CallResult};

use crate::daemon::client::Client;
use crate::daemon::protocol::{ActionEntry, ActionsOutput, Body, CallOutput, Op};
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{Error, ErrorKind, Result};
use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt};

/// How often the host config files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long a repeated call waits for a held request's result before it answers that the
/// request still waits for approval.
const PENDING_WAIT: Duration = Duration::from_secs(5);

/// The longest tool name MCP allows, in characters.
const MAX_TOOL_NAME: usize = 128;

/// The MCP tool name for an action: every `.` becomes `__`.
///
/// Returns `None` when the name cannot be mapped reversibly (a `_` next to a `.` or another
/// `_`, a character outside `A-Z a-z 0-9 _ - .`) or the tool name would be longer than 128
/// characters.
pub fn tool_name(action: &str) -> Option<String> {
    let ok_chars = !action.is_empty()
        && action
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let b = action.as_bytes();
    let ambiguous = b
        .windows(2)
        .any(|w| matches!(w, [b'_', b'_'] | [b'_', b'.'] | [b'.', b'_']));
    let name = action.replace('.', "__");
    (ok_chars && !ambiguous && name.len() <= MAX_TOOL_NAME).then_some(name)
}

/// The action name for an MCP tool name: every `__` becomes `.` (the inverse of
/// [`tool_name`]).
///
/// Returns `None` for a name that no action maps to (a run of three or more underscores that
/// is not made of pairs, or a character outside `A-Z a-z 0-9 _ -`).
pub fn action_name(tool: &str) -> Option<String> {
    if tool.is_empty()
        || !tool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return None;
    }
    let action = tool.replace("__", ".");
    (tool_name(&action).as_deref() == Some(tool)).then_some(action)
}

/// The name of the alias-request tool.
pub const REQUEST_TOOL: &str = "request";

/// The HTTP methods an alias request may use (as [`outloop_core::broker::AliasRequest`]).
const ALIAS_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// The `request` tool for the allowed aliases: `(name, description, allow rules)` each.
fn request_tool(aliases: &[(String, String, Vec<String>)]) -> Tool {
    let mut description = String::from(
        "Send an HTTP request through an alias, a pinned upstream whose credential Outloop applies host-side; the result is the redacted response. Aliases:",
    );
    for (name, desc, allow) in aliases {
        description.push_str(&format!("\n- {name}"));
        if !desc.is_empty() {
            description.push_str(&format!(": {desc}"));
        }
        if !allow.is_empty() {
            description.push_str(&format!(" (allowed: {})", allow.join(", ")));
        }
    }
    let names: Vec<&str> = aliases.iter().map(|(n, _, _)| n.as_str()).collect();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "alias": { "type": "string", "enum": names, "description": "The alias to send through." },
            "method": { "type": "string", "enum": ALIAS_METHODS, "description": "The HTTP method." },
            "path": { "type": "string", "pattern": "^/", "maxLength": 2048, "description": "The path below the alias's base URL, starting with `/`." },
            "query": { "type": "string", "maxLength": 4096, "description": "The raw query string, without `?`." },
            "body": { "type": ["string", "object", "array"], "description": "The request body: text, or a JSON value sent as application/json." }
        },
        "required": ["alias", "method", "path"],
        "additionalProperties": false,
    });
    let serde_json::Value::Object(schema) = schema else {
        unreachable!("json! of an object literal is an object")
    };
    Tool::new(REQUEST_TOOL, description, Arc::new(schema))
}

/// The MCP tools for a workspace's actions and aliases: name, description and input schema.
///
/// `allow_rules` gives an alias's `allow` rules for the `request` tool's description. Actions
/// without a reversible tool name (and an action named `request` while the `request` tool is
/// listed) are left out; the second vector holds one line per action left out, for stderr.
pub fn tools_from(
    list: &[ActionInfo],
    allow_rules: impl Fn(&str) -> Vec<String>,
) -> (Vec<Tool>, Vec<String>) {
    let mut tools = Vec::new();
    let mut skipped = Vec::new();
    let aliases: Vec<(String, String, Vec<String>)> = list
        .iter()
        .filter(|a| a.kind == "alias")
        .filter_map(|a| {
            let name = a.name.strip_prefix("alias:")?;
            Some((name.to_owned(), a.description.clone(), allow_rules(name)))
        })
        .collect();
    for a in list.iter().filter(|a| a.kind == "action") {
        let Some(name) = tool_name(&a.name) else {
            skipped.push(format!(
                "action `{}` gets no MCP tool: its name has `_` next to `.` or `_`, or is too long, so it cannot be mapped to a tool name reversibly",
                a.name
            ));
            continue;
        };
        if name == REQUEST_TOOL && !aliases.is_empty() {
            skipped.push(format!(
                "action `{}` gets no MCP tool: `{REQUEST_TOOL}` is the alias-request tool",
                a.name
            ));
            continue;
        }
        let mut description = if a.description.is_empty() {
            format!("Outloop action `{}`.", a.name)
        } else {
            a.description.clone()
        };
        if a.decision == "approve" {
            description.push_str(
                " Needs a human's approval: the first call returns an approval id; call again with the same arguments after the human approved it.",
            );
        }
        let schema = match &a.params {
            serde_json::Value::Object(m) => m.clone(),
            _ => {
                let mut m = JsonObject::new();
                m.insert("type".into(), "object".into());
                m
            }
        };
        tools.push(Tool::new(name, description, Arc::new(schema)));
    }
    if !aliases.is_empty() {
        tools.push(request_tool(&aliases));
    }
    (tools, skipped)
}

/// Reads the `request` tool's arguments into an alias request for `workspace`.
fn alias_request(workspace: &Path, args: &JsonObject) -> std::result::Result<AliasRequest, String> {
    let text = |key: &str| match args.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("argument `{key}` must be a string")),
    };
    if let Some(k) = args
        .keys()
        .find(|k| !["alias", "method", "path", "query", "body"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown argument `{k}`; the arguments are alias, method, path, query, body"
        ));
    }
    let need = |key: &str| text(key)?.ok_or_else(|| format!("argument `{key}` is required"));
    let mut headers = Vec::new();
    let body = match args.get("body") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
        Some(v) => {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
            v.to_string().into_bytes()
        }
    };
    Ok(AliasRequest {
        workspace: workspace.to_path_buf(),
        tenant: None,
        alias: need("alias")?,
        method: need("method")?,
        path: need("path")?,
        query: text("query")?,
        headers,
        body,
    })
}

/// What the human can do about an error, by its exit-code group.
fn hint(e: &Error, action: &str) -> String {
    match e.kind() {
        ErrorKind::UnboundWorkspace => {
            "This directory is bound to no tenant; the human can bind it with `outloop bind <dir> <tenant>` (from a terminal, not through this agent).".into()
        }
        ErrorKind::PolicyDenied => format!(
            "Only the human can change policy, in the host config ([policy.tenants.<tenant>]); `outloop policy explain {action}` shows the rule. Do not look for the key elsewhere."
        ),
        ErrorKind::ApprovalRequired => {
            "Nobody approved it in time. Call the tool again to ask again, and ask the human to run `outloop approvals` and `outloop approve <id>` from a terminal outside the workspace.".into()
        }
        ErrorKind::UnknownAction => {
            "No such action in the host config now; list the tools again (tools/list).".into()
        }
        ErrorKind::InvalidParameter | ErrorKind::Usage => {
            "Fix the arguments to match the tool's input schema.".into()
        }
        ErrorKind::Config => {
            "The host config needs a change that only the human can make.".into()
        }
        k if k.exit_code() == 4 => {
            "The credential could not be read from its backend; the human can check it (`outloop secret list`, `outloop tenant list`).".into()
        }
        k if k.exit_code() == 5 => {
            "The upstream could not be reached in time or a safety check refused the request or response; retrying may help if it was temporary.".into()
        }
        _ => "An internal error; the human can find the attempt with `outloop audit tail`.".into(),
    }
}

fn error_result(text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// The tool result for a finished call: the redacted `outloop call --json` object, or an
/// error result saying what went wrong and what the human can do.
fn render(outcome: Result<CallResult>, action: &str) -> CallToolResult {
    match outcome {
        Ok(r) => match serde_json::to_string(&r) {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(e) => error_result(format!("internal: cannot encode the result: {e}")),
        },
        Err(e) => error_result(format!(
            "{}: {}\n{}",
            e.kind().as_str(),
            e.message(),
            hint(&e, action)
        )),
    }
}

/// Where the broker's `on_hold` callback hands the pending approval to the call that waits
/// for it (one at a time, under [`State::hold_gate`]).
type HoldSlot = Arc<Mutex<Option<tokio::sync::oneshot::Sender<Approval>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning only means a panic elsewhere; the data is intact.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loads the host config and builds a broker whose holds are reported to `slot`.
fn build_broker(paths: &Paths, slot: &HoldSlot) -> Result<Broker> {
    let cfg = HostConfig::load(paths)?;
    let backends = outloop_backends::from_config(&cfg)?;
    let slot = Arc::clone(slot);
    Broker::builder(cfg)
        .backends(backends)
        .on_hold(Arc::new(move |a: &Approval| report_hold(&slot, a)))
        .build()
}

/// Logs a hold and hands the approval to the call waiting for it in `slot`.
fn report_hold(slot: &HoldSlot, a: &Approval) {
    errln!(
        "outloop mcp: held for a human's approval as {}; run `outloop approve {}` (or reject) from outside the workspace",
        a.id,
        a.id
    );
    if let Some(tx) = lock(slot).take() {
        let _ = tx.send(a.clone());
    }
}

/// A request held for approval whose call keeps waiting in the background.
struct Pending {
    id: String,
    task: tokio::task::JoinHandle<Result<CallResult>>,
}

/// Who runs a request: the daemon (a fresh connection per request), or the in-process
/// broker when no daemon answers.
enum Via {
    Daemon(Client),
    Local(Arc<Broker>),
}

/// The server's state, shared by the handler and the config watcher.
struct State {
    paths: Paths,
    dir: PathBuf,
    /// The in-process broker: built when a request finds no daemon, rebuilt when the config
    /// changes, and kept while the daemon answers (it is not used then).
    local: RwLock<Option<Arc<Broker>>>,
    slot: HoldSlot,
    hold_gate: tokio::sync::Mutex<()>,
    pending: Mutex<HashMap<String, Pending>>,
    /// Fires when the tool list changed, for `subscriptions/listen` streams.
    changed: tokio::sync::broadcast::Sender<()>,
    /// The tools as the config watcher last saw them.
    seen: Mutex<Vec<Tool>>,
}

/// The core result for a daemon's answer (the same fields in the same order).
fn call_result(o: CallOutput) -> CallResult {
    CallResult {
        action: o.action,
        tenant: o.tenant,
        status: o.status,
        status_text: o.status_text,
        headers: o.headers,
        body: o.body,
        redactions: o.redactions,
    }
}

/// A call or alias request on its way, from either side.
type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<CallResult>> + Send>>;

/// Sends `op` (`call` or `request`) to the daemon; holds go to `on_held`.
fn through(mut c: Client, op: Op, on_held: impl FnMut(&Approval) + Send + 'static) -> CallFuture {
    Box::pin(async move {
        match c.request(op, on_held).await? {
            Body::Call(r) => Ok(call_result(r)),
            _ => Err(unexpected("call or request")),
        }
    })
}

fn unexpected(op: &str) -> Error {
    Error::internal(format!(
        "the outloop daemon's answer to `{op}` is of another type"
    ))
}

impl State {
    /// The in-process broker, built on first use.
    fn local(&self) -> Result<Arc<Broker>> {
        if let Some(b) = self
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Ok(Arc::clone(b));
        }
        let b = Arc::new(build_broker(&self.paths, &self.slot)?);
        *self.local.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&b));
        Ok(b)
    }

    /// The daemon when one answers now, else the in-process broker.
    async fn via(&self) -> Result<Via> {
        match Client::connect(&self.paths).await {
            Some(c) => Ok(Via::Daemon(c)),
            None => self.local().map(Via::Local),
        }
    }

    /// The workspace's actions and aliases, from whichever side runs requests now.
    async fn actions(&self) -> Result<ActionsOutput> {
        match self.via().await? {
            Via::Daemon(mut c) => match c.request(Op::Actions, |_| {}).await? {
                Body::Actions(a) => Ok(a),
                _ => Err(unexpected("actions")),
            },
            Via::Local(b) => {
                let (ws, list) = b.actions_for(&self.dir)?;
                Ok(ActionsOutput {
                    workspace: ws.root,
                    tenant: ws.tenant,
                    actions: ActionEntry::all_from(list, b.config()),
                })
            }
        }
    }

    /// The tools for the workspace's actions and aliases from `list`.
    fn tools_of(list: &[ActionEntry]) -> (Vec<Tool>, Vec<String>) {
        let infos: Vec<ActionInfo> = list
            .iter()
            .map(|e| ActionInfo {
                name: e.name.clone(),
                kind: e.kind.clone(),
                description: e.description.clone(),
                decision: e.decision.clone(),
                params: e.params.clone(),
            })
            .collect();
        tools_from(&infos, |alias| {
            list.iter()
                .find(|e| e.name.strip_prefix("alias:") == Some(alias))
                .map(|e| e.allow.clone())
                .unwrap_or_default()
        })
    }

    /// The tools for the workspace now, and the lines about actions left out. An unbound
    /// workspace has no tools.
    async fn tools(&self) -> Result<(Vec<Tool>, Vec<String>)> {
        match self.actions().await {
            Ok(a) => Ok(Self::tools_of(&a.actions)),
            Err(e) if e.kind() == ErrorKind::UnboundWorkspace => Ok((Vec::new(), Vec::new())),
            Err(e) => Err(e),
        }
    }

    /// Logs where the server stands (the workspace, its tenant and the tool count) and
    /// remembers the tools for the config watcher.
    async fn log_tools(&self) {
        match self.actions().await {
            Ok(a) => {
                let (tools, skipped) = Self::tools_of(&a.actions);
                for s in skipped {
                    errln!("outloop mcp: {s}");
                }
                errln!(
                    "outloop mcp: workspace {} (tenant `{}`): {} tool{}",
                    a.workspace.display(),
                    a.tenant,
                    tools.len(),
                    if tools.len() == 1 { "" } else { "s" }
                );
                *lock(&self.seen) = tools;
            }
            Err(e) => {
                errln!("outloop mcp: no tools: {}", e.message());
                lock(&self.seen).clear();
            }
        }
    }

    /// Whether policy holds `target` for approval (with no backend call); false when it
    /// cannot tell (the call itself then reports the error).
    async fn held(
        &self,
        target: &str,
        params: &RawParams,
        alias_request: Option<(&str, &str)>,
    ) -> bool {
        let Ok(via) = self.via().await else {
            return false;
        };
        match via {
            Via::Daemon(mut c) => {
                let (method, path) = alias_request
                    .map(|(m, p)| (m.to_owned(), p.to_owned()))
                    .unzip();
                let op = Op::Explain {
                    action: target.to_owned(),
                    params: params.clone().into_iter().collect(),
                    workspace: None,
                    method,
                    path,
                };
                matches!(c.request(op, |_| {}).await, Ok(Body::Explain(e)) if e.decision == "approve")
            }
            Via::Local(b) => b
                .explain_request(&self.dir, target, params, alias_request)
                .is_ok_and(|e| e.decision == "approve"),
        }
    }

    /// The hold callback for a daemon request: logs as the in-process broker's does and
    /// hands the approval to the waiting call.
    fn on_held(&self) -> impl FnMut(&Approval) + Send + 'static {
        let slot = Arc::clone(&self.slot);
        move |a: &Approval| report_hold(&slot, a)
    }

    async fn call(&self, tool: &str, args: JsonObject) -> CallToolResult {
        // Keys are sorted (serde_json's map is ordered): a stable key for the same arguments.
        let key = format!("{tool}\n{}", serde_json::Value::Object(args.clone()));
        if tool == REQUEST_TOOL {
            return self.alias_call(key, args).await;
        }
        let Some(action) = action_name(tool) else {
            return error_result(format!("unknown_action: no tool `{tool}` (see tools/list)"));
        };
        if let Some(result) = self.take_pending(&key, &action).await {
            return result;
        }
        let params: RawParams = args.into_iter().collect();
        // Only a request policy holds takes the approval path; every request, denied ones
        // included, goes through the broker so it is audited.
        let held = self.held(&action, &params, None).await;
        let via = match self.via().await {
            Ok(v) => v,
            Err(e) => return render(Err(e), &action),
        };
        let fut: CallFuture = match via {
            Via::Daemon(c) => {
                let op = Op::Call {
                    action: action.clone(),
                    params: params.into_iter().collect(),
                    tenant: None,
                };
                through(c, op, self.on_held())
            }
            Via::Local(broker) => {
                let request = CallRequest {
                    workspace: self.dir.clone(),
                    tenant: None,
                    action: action.clone(),
                    params,
                };
                Box::pin(async move { broker.call(request).await })
            }
        };
        self.run(key, &action, held, fut).await
    }

    /// The `request` tool: one request through an alias.
    async fn alias_call(&self, key: String, args: JsonObject) -> CallToolResult {
        let label = args
            .get("alias")
            .and_then(|a| a.as_str())
            .map(|a| format!("alias:{a}"))
            .unwrap_or_else(|| "alias:<name>".into());
        if let Some(result) = self.take_pending(&key, &label).await {
            return result;
        }
        let request = match alias_request(&self.dir, &args) {
            Ok(r) => r,
            Err(msg) => {
                return render(Err(Error::new(ErrorKind::InvalidParameter, msg)), &label);
            }
        };
        let held = self
            .held(
                &label,
                &RawParams::new(),
                Some((&request.method, &request.path)),
            )
            .await;
        // For the hint: `outloop policy explain alias:<name> --method M --path P`.
        let label = format!(
            "alias:{} --method {} --path {}",
            request.alias, request.method, request.path
        );
        let via = match self.via().await {
            Ok(v) => v,
            Err(e) => return render(Err(e), &label),
        };
        let fut: CallFuture = match via {
            Via::Daemon(c) => {
                let op = Op::Request {
                    alias: request.alias,
                    method: request.method,
                    path: request.path,
                    query: request.query,
                    headers: request.headers,
                    // The tool's body is text or JSON: always UTF-8.
                    body: String::from_utf8_lossy(&request.body).into_owned(),
                    tenant: None,
                };
                through(c, op, self.on_held())
            }
            Via::Local(broker) => Box::pin(async move {
                let alias = request.alias.clone();
                let tenant =
                    outloop_core::workspace::resolve(broker.config(), &request.workspace)?.tenant;
                broker
                    .request(request)
                    .await?
                    .collect(&alias, &tenant)
                    .await
            }),
        };
        self.run(key, &label, held, fut).await
    }

    /// Runs one call. A call policy holds (`held`) runs in the background: when the broker
    /// reports the hold, the approval id goes back at once as an error result and the call
    /// waits for the human there; a repeated call with the same `key` picks up its result.
    async fn run(
        &self,
        key: String,
        label: &str,
        held: bool,
        fut: impl std::future::Future<Output = Result<CallResult>> + Send + 'static,
    ) -> CallToolResult {
        if !held {
            return render(fut.await, label);
        }
        let _gate = self.hold_gate.lock().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        *lock(&self.slot) = Some(tx);
        let mut task = tokio::spawn(fut);
        let outcome = tokio::select! {
            approval = rx => approval.ok(),
            _ = &mut task => None,
        };
        lock(&self.slot).take();
        match outcome {
            Some(a) => {
                let text = format!(
                    "approval_required: held for a human's approval as {id} (rule: {rule}).\nAsk the human to run `outloop approve {id}` (or `outloop reject {id}`) from a terminal outside the workspace within {secs} s, then call this tool again with the same arguments to get the result.",
                    id = a.id,
                    rule = a.rule,
                    secs = (a.expires - now()).max(0),
                );
                lock(&self.pending).insert(key, Pending { id: a.id, task });
                error_result(text)
            }
            None => match task.await {
                Ok(r) => render(r, label),
                Err(e) => error_result(format!("internal: the call failed: {e}")),
            },
        }
    }

    /// The result of a held request with these arguments, if there is one: its outcome once
    /// the call finished (waiting up to [`PENDING_WAIT`] for a call the human just approved),
    /// else an error result saying it still waits.
    async fn take_pending(&self, key: &str, action: &str) -> Option<CallToolResult> {
        let mut p = lock(&self.pending).remove(key)?;
        match tokio::time::timeout(PENDING_WAIT, &mut p.task).await {
            Ok(Ok(r)) => Some(render(r, action)),
            Ok(Err(e)) => Some(error_result(format!("internal: the call failed: {e}"))),
            Err(_) => {
                let text = format!(
                    "approval_required: still waiting for a human's approval as {id}.\nAsk the human to run `outloop approve {id}` from a terminal outside the workspace, then call this tool again with the same arguments.",
                    id = p.id
                );
                lock(&self.pending).insert(key.to_owned(), p);
                Some(error_result(text))
            }
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The MCP handler.
#[derive(Clone)]
struct Server {
    state: Arc<State>,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("outloop", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Outloop performs approved actions against this workspace's services with credentials the agent never sees. Call a tool instead of looking for API keys; results are redacted. Denials and approval holds say what the human can do.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        let (tools, _) = self
            .state
            .tools()
            .await
            .map_err(|e| ErrorData::internal_error(e.message().to_owned(), None))?;
        Ok(ListToolsResult {
            tools,
            ..Default::default()
        })
    }

    /// Accepts `subscriptions/listen` for tool list changes (protocol 2026-07-28); rmcp
    /// intersects this with what was requested and advertised.
    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = Some(true);
        Some(accepted)
    }

    /// Sends `notifications/tools/list_changed` on the stream each time a config reload
    /// changed the tools, until the client cancels it.
    async fn listen(&self, context: SubscriptionContext) -> std::result::Result<(), ErrorData> {
        let mut changed = self.state.changed.subscribe();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                r = changed.recv() => match r {
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if context.sink().notify_tool_list_changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        Ok(self.state.call(&request.name, args).await.into())
    }
}

/// Watches the config; on a change checks that it loads, rebuilds the in-process broker if
/// there is one, asks for the tools again (from the daemon when one answers, which reloads
/// the changed config before it answers) and tells the client when they changed.
/// `last` is the fingerprint taken before the start, so a change made since is not missed.
async fn watch(
    state: Arc<State>,
    peer: Peer<RoleServer>,
    mut last: Vec<crate::config_watch::Stamp>,
) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = crate::config_watch::fingerprint(&state.paths);
        if now == last {
            continue;
        }
        last = now;
        let has_local = state
            .local
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        // The same check whichever side runs requests: a config that does not load is not
        // used (the daemon keeps its previous one too).
        let loaded = if has_local {
            build_broker(&state.paths, &state.slot).map(|b| {
                *state.local.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(b));
            })
        } else {
            HostConfig::load(&state.paths).map(drop)
        };
        if let Err(e) = loaded {
            errln!(
                "outloop mcp: the changed config is not used, the previous one stays: {}",
                e.message()
            );
            continue;
        }
        errln!("outloop mcp: config reloaded");
        let after = state.tools().await.map(|(t, _)| t).unwrap_or_default();
        let changed = {
            let mut seen = lock(&state.seen);
            let changed = *seen != after;
            *seen = after;
            changed
        };
        if changed {
            state.log_tools().await;
            // Sessions opened with `initialize` get the notification directly; 2026-07-28
            // sessions get it on their `subscriptions/listen` streams.
            let _ = state.changed.send(());
            if let Err(e) = peer.notify_tool_list_changed().await {
                errln!("outloop mcp: cannot send tools/list_changed: {e}");
            }
        }
    }
}

/// Runs the MCP server on stdio for `workspace` (default: the current directory) until the
/// client closes stdin. Returns exit code 0 then.
///
/// With `--workspace`, the process first changes its working directory there, so that a
/// daemon, which takes the workspace from its socket peer's working directory, sees the same
/// workspace the in-process broker is given.
///
/// # Errors
///
/// [`ErrorKind::Usage`] when `--workspace` does not exist or cannot be entered;
/// [`ErrorKind::Config`] when the host config does not load at start (later bad configs are
/// logged and skipped); backend kinds when no daemon runs and a configured backend cannot be
/// set up; [`ErrorKind::Io`] when the MCP handshake fails.
pub async fn run(paths: Paths, workspace: Option<PathBuf>) -> Result<u8> {
    let dir = match workspace {
        Some(d) => {
            let dir = std::fs::canonicalize(&d).map_err(|e| {
                Error::new(
                    ErrorKind::Usage,
                    format!("--workspace `{}`: {e}", d.display()),
                )
            })?;
            std::env::set_current_dir(&dir).map_err(|e| {
                Error::new(
                    ErrorKind::Usage,
                    format!("--workspace `{}`: {e}", d.display()),
                )
            })?;
            dir
        }
        None => {
            let cwd = std::env::current_dir().map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot read the current directory: {e}"),
                )
            })?;
            std::fs::canonicalize(&cwd).unwrap_or(cwd)
        }
    };
    let seen = crate::config_watch::fingerprint(&paths);
    // A config that does not load refuses the start, daemon or not.
    HostConfig::load(&paths)?;
    let state = Arc::new(State {
        paths,
        dir,
        local: RwLock::new(None),
        slot: Arc::default(),
        hold_gate: tokio::sync::Mutex::new(()),
        pending: Mutex::new(HashMap::new()),
        changed: tokio::sync::broadcast::channel(16).0,
        seen: Mutex::new(Vec::new()),
    });
    // Without a daemon, the backends are set up now, so a broken one refuses the start.
    if Client::connect(&state.paths).await.is_none() {
        state.local()?;
    }
    state.log_tools().await;
    let server = Server {
        state: Arc::clone(&state),
    };
    // SIGINT or SIGTERM (how clients stop a server that outlived its stdin) ends the session
    // at once. Calls still in flight are dropped when the runtime shuts down, and the broker
    // appends each one's audit record as `cancelled`.
    let stop = crate::commands::interrupted();
    tokio::pin!(stop);
    let running = tokio::select! {
        r = server.serve(rmcp::transport::stdio()) => {
            r.map_err(|e| Error::new(ErrorKind::Io, format!("MCP handshake failed: {e}")))?
        }
        signal = &mut stop => return Ok(128 + signal),
    };
    let watcher = tokio::spawn(watch(state, running.peer().clone(), seen));
    let quit = tokio::select! {
        quit = running.waiting() => quit,
        signal = &mut stop => {
            watcher.abort();
            return Ok(128 + signal);
        }
    };
    watcher.abort();
    if let Err(e) = quit {
        errln!("outloop mcp: the server task failed: {e}");
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_map_dots_reversibly() {
        // (action, tool name or None when it cannot be mapped)
        let cases: &[(&str, Option<&str>)] = &[
            ("hubspot.contacts.list", Some("hubspot__contacts__list")),
            ("metadata", Some("metadata")),
            ("send-grid.mail_send", Some("send-grid__mail_send")),
            ("a..b", Some("a____b")),
            ("a_b.c-d", Some("a_b__c-d")),
            ("a__b", None),
            ("a_.b", None),
            ("a._b", None),
            ("", None),
            ("bad name", None),
        ];
        for (action, tool) in cases {
            assert_eq!(tool_name(action).as_deref(), *tool, "action `{action}`");
            if let Some(t) = tool {
                assert!(
                    t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                    "`{t}` has a character model APIs refuse"
                );
                assert_eq!(action_name(t).as_deref(), Some(*action), "tool `{t}`");
            }
        }
        let long = "a.".repeat(43) + "b"; // 87 chars, 130 as a tool name
        assert_eq!(tool_name(&long), None);
        assert!(tool_name(&"a".repeat(128)).is_some());
    }

    #[test]
    fn tool_names_that_no_action_maps_to_are_refused() {
        for t in ["a___b", "a.b", "x y", "", "_", "a_"] {
            if let Some(a) = action_name(t) {
                // `_` and `a_` are plain action names; they must map back to themselves.
                assert_eq!(tool_name(&a).as_deref(), Some(t), "tool `{t}`");
            }
        }
        assert_eq!(action_name("a___b"), None);
        assert_eq!(action_name("a.b"), None);
        assert_eq!(action_name("x y"), None);
        assert_eq!(action_name(""), None);
    }

    fn broker_with(cfg: &str) -> (tempfile::TempDir, Broker, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let ws = root.join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        let paths = Paths::under(root.join("home"));
        let text = format!(
            "[tenants.acme]\nworkspaces = [\"{}\"]\n[tenants.acme.credentials]\nhubspot = \"vault://acme/hubspot\"\n{cfg}",
            ws.display()
        );
        let file = paths.config_file();
        let cfg = HostConfig::from_str_at(&paths, &file, &text).unwrap();
        let broker = Broker::builder(cfg)
            .backend(Arc::new(outloop_core::backend::MemoryBackend::new(
                "vault",
                outloop_core::BackendKind::Vault,
            )))
            .build()
            .unwrap();
        (tmp, broker, ws)
    }

    #[test]
    fn tools_carry_the_action_schema_and_description() {
        let (_tmp, broker, ws) = broker_with(
            r#"
[actions."hubspot.contacts.list"]
description = "List CRM contacts"
credential = "hubspot"
method = "GET"
url = "https://api.hubapi.com/crm/v3/objects/contacts"
query = { limit = "{limit}", after = "{after}", order = "{order}" }
auth = { type = "bearer" }
[actions."hubspot.contacts.list".params]
limit = { type = "integer", min = 1, max = 100, default = 10 }
after = { type = "string", pattern = "[0-9]+", required = false }
order = { type = "string", enum = ["asc", "desc"], description = "Sort order" }

[actions."hubspot.contacts.delete"]
credential = "hubspot"
auth = { type = "bearer" }
method = "DELETE"
url = "https://api.hubapi.com/crm/v3/objects/contacts/{id}"
params.id = { type = "string" }

[actions."hubspot.mail.send"]
credential = "hubspot"
auth = { type = "bearer" }
method = "POST"
url = "https://api.hubapi.com/mail"

[actions."odd__name"]
method = "GET"
url = "https://api.hubapi.com/x"

[policy]
default = "deny"
[policy.tenants.acme]
allow = ["hubspot.contacts.*", "odd__name"]
deny = ["hubspot.contacts.delete"]
approve = ["hubspot.mail.send"]
"#,
        );
        let (_, list) = broker.actions_for(&ws).unwrap();
        let (tools, skipped) = tools_from(&list, |_| Vec::new());
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        // Denied actions have no tool; the unmappable name is reported, not listed.
        assert_eq!(names, ["hubspot__contacts__list", "hubspot__mail__send"]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].contains("`odd__name`"), "{skipped:?}");

        let list_tool = &tools[0];
        assert_eq!(list_tool.description.as_deref(), Some("List CRM contacts"));
        let schema = serde_json::Value::Object((*list_tool.input_schema).clone());
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], serde_json::json!(["order"]));
        assert_eq!(
            schema["properties"]["limit"],
            serde_json::json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 10})
        );
        assert_eq!(schema["properties"]["after"]["pattern"], "^(?:[0-9]+)$");
        assert_eq!(
            schema["properties"]["order"]["enum"],
            serde_json::json!(["asc", "desc"])
        );
        assert_eq!(schema["properties"]["order"]["description"], "Sort order");

        let send = &tools[1];
        let d = send.description.as_deref().unwrap();
        assert!(d.starts_with("Outloop action `hubspot.mail.send`."), "{d}");
        assert!(d.contains("human's approval"), "{d}");
        assert_eq!(
            serde_json::Value::Object((*send.input_schema).clone())["properties"],
            serde_json::json!({})
        );
    }

    #[test]
    fn the_request_tool_lists_allowed_aliases_and_their_rules() {
        let info = |name: &str, kind: &str| ActionInfo {
            name: name.into(),
            kind: kind.into(),
            description: if kind == "alias" {
                "HubSpot CRM".into()
            } else {
                String::new()
            },
            decision: "allow".into(),
            params: serde_json::json!({"type": "object", "properties": {}}),
        };
        let list = [
            info("request", "action"),
            info("alias:hubspot", "alias"),
            info("alias:stripe", "alias"),
        ];
        let (tools, skipped) = tools_from(&list, |a| {
            if a == "hubspot" {
                vec!["GET /crm/v3/**".into()]
            } else {
                vec![]
            }
        });
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, ["request"]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].contains("alias-request tool"), "{skipped:?}");
        let t = &tools[0];
        let d = t.description.as_deref().unwrap();
        assert!(
            d.contains("- hubspot: HubSpot CRM (allowed: GET /crm/v3/**)"),
            "{d}"
        );
        let schema = serde_json::Value::Object((*t.input_schema).clone());
        assert_eq!(
            schema["properties"]["alias"]["enum"],
            serde_json::json!(["hubspot", "stripe"])
        );
        assert_eq!(
            schema["required"],
            serde_json::json!(["alias", "method", "path"])
        );
        // Without aliases there is no request tool, and an action may be called `request`.
        let (tools, skipped) = tools_from(&list[..1], |_| vec![]);
        assert_eq!(tools.len(), 1);
        assert_eq!(
            tools[0].description.as_deref(),
            Some("Outloop action `request`.")
        );
        assert!(skipped.is_empty());
    }

    #[test]
    fn request_arguments_are_checked_by_name() {
        let args = |v: serde_json::Value| v.as_object().unwrap().clone();
        let r = alias_request(
            Path::new("/w"),
            &args(
                serde_json::json!({"alias": "a", "method": "POST", "path": "/x", "body": {"k": 1}}),
            ),
        )
        .unwrap();
        assert_eq!(r.body, br#"{"k":1}"#);
        assert_eq!(
            r.headers,
            [("Content-Type".to_owned(), "application/json".to_owned())]
        );
        let e = alias_request(
            Path::new("/w"),
            &args(serde_json::json!({"alias": "a", "method": "GET"})),
        )
        .unwrap_err();
        assert_eq!(e, "argument `path` is required");
        let e = alias_request(
            Path::new("/w"),
            &args(serde_json::json!({"alias": "a", "method": "GET", "path": "/", "headers": {}})),
        )
        .unwrap_err();
        assert!(e.starts_with("unknown argument `headers`"), "{e}");
        let e = alias_request(
            Path::new("/w"),
            &args(serde_json::json!({"alias": 3, "method": "GET", "path": "/"})),
        )
        .unwrap_err();
        assert_eq!(e, "argument `alias` must be a string");
    }

    #[test]
    fn errors_say_what_the_human_can_do() {
        let denied = render(
            Err(Error::new(
                ErrorKind::PolicyDenied,
                "denied: `x.y` is denied for tenant `acme` (rule: policy.tenants.acme.deny[0])",
            )),
            "x.y",
        );
        assert_eq!(denied.is_error, Some(true));
        let v = serde_json::to_value(&denied).unwrap();
        let text = v["content"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("policy_denied: denied: `x.y`"), "{text}");
        assert!(text.contains("outloop policy explain x.y"), "{text}");

        let ok = render(
            Ok(CallResult {
                action: "x.y".into(),
                tenant: "acme".into(),
                status: 200,
                status_text: "OK".into(),
                headers: Default::default(),
                body: "{}".into(),
                redactions: 0,
            }),
            "x.y",
        );
        assert_ne!(ok.is_error, Some(true));
        let v = serde_json::to_value(&ok).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["action"], "x.y");
        assert_eq!(body["status"], 200);
    }
}
