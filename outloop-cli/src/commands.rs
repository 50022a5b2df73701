//! The commands: parse, call the library, print.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use outloop_backends::vault::VaultBackend;
use outloop_core::action::RawParams;
use outloop_core::audit::{AuditLog, create_private_dir};
use outloop_core::backend::SecretBackend;
use outloop_core::broker::Broker;
use outloop_core::config::{HostConfig, Paths};
use outloop_core::{BackendKind, Error, ErrorKind, Result, SecretRef, SecretValue};

use crate::cli::{
    AuditCommand, CallArgs, Cli, Command, ExplainArgs, PolicyCommand, SecretCommand, TenantCommand,
};
use crate::edit;

/// The largest secret `secret set` stores, in bytes (PEM keys and JSON key files fit).
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Runs one command; returns the process exit code on success.
pub async fn run(cli: Cli) -> Result<u8> {
    let paths = Paths::from_env()?;
    // Commands that edit the config or a backend make a running daemon reload.
    let edits = matches!(
        cli.command,
        Command::Init(_)
            | Command::Tenant {
                command: TenantCommand::Add { .. }
            }
            | Command::Bind { .. }
            | Command::Secret {
                command: SecretCommand::Set { .. } | SecretCommand::Delete { .. }
            }
    );
    let code = run_command(&paths, cli).await;
    if edits && code.is_ok() {
        crate::daemon::client::reload_after_edit(&paths).await;
    }
    code
}

async fn run_command(paths: &Paths, cli: Cli) -> Result<u8> {
    let paths = paths.clone();
    match cli.command {
        Command::Init(args) => match args.agent {
            Some(agent) => crate::agent_setup::run(agent, args.workspace.as_deref()),
            None => init(&paths),
        },
        Command::Tenant { command } => match command {
            TenantCommand::Add { name } => {
                edit::add_tenant(&paths, &name)?;
                outln!("added tenant `{name}`; bind a workspace with `outloop bind <dir> {name}`");
                Ok(0)
            }
            TenantCommand::List => {
                let cfg = HostConfig::load(&paths)?;
                for (name, t) in &cfg.tenants {
                    outln!("{name}");
                    for w in &t.workspaces {
                        outln!("  workspace  {}", w.display());
                    }
                    for (c, e) in &t.credentials {
                        outln!("  credential {c} = {}", e.reference);
                    }
                }
                Ok(0)
            }
        },
        Command::Bind { dir, tenant } => {
            let canonical = std::fs::canonicalize(&dir).map_err(|e| {
                Error::new(
                    ErrorKind::Usage,
                    format!("cannot bind `{}`: {e}", dir.display()),
                )
            })?;
            if !canonical.is_dir() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("cannot bind `{}`: not a directory", dir.display()),
                ));
            }
            edit::bind(&paths, &canonical, &tenant)?;
            outln!("bound {} to tenant `{tenant}`", canonical.display());
            Ok(0)
        }
        Command::Secret { command } => secret(&paths, command).await,
        Command::Actions {
            json,
            pack: Some(file),
        } => crate::packs::run(&file, json),
        Command::Actions { json, pack: None } => actions(&paths, json).await,
        Command::Call(args) => call(&paths, args).await,
        Command::Policy {
            command: PolicyCommand::Explain(args),
        } => explain(&paths, args).await,
        Command::Policy {
            command: PolicyCommand::Test { file, json },
        } => crate::policy_test::run(&paths, &file, json),
        Command::Approvals { json } => approvals(&paths, json),
        Command::Approve { id } => decide(&paths, &id, true),
        Command::Reject { id } => decide(&paths, &id, false),
        Command::Audit { command } => audit(&paths, command),
        Command::Mcp { workspace } => crate::mcp::run(paths, workspace).await,
        Command::Doctor { json } => crate::doctor::run(&paths, json).await,
        Command::Scan(args) => crate::scan::run(&paths, &args).await,
        Command::Import(args) => crate::import::run(&paths, &args).await,
        Command::Proxy(args) => proxy(&paths, args).await,
        Command::Exec(args) => crate::exec::run(&paths, args).await,
        Command::Serve { proxy_port } => crate::daemon::server::serve(&paths, proxy_port).await,
        Command::Status { json } => crate::daemon::client::status(&paths, json).await,
    }
}

async fn proxy(paths: &Paths, args: crate::cli::ProxyArgs) -> Result<u8> {
    match args.command {
        None => {
            let port = args.port.unwrap_or(crate::proxy::DEFAULT_PORT);
            crate::proxy::run(paths, broker(paths)?, port).await
        }
        Some(crate::cli::ProxyCommand::Url { alias, port }) => {
            let cfg = HostConfig::load(paths)?;
            let port = port
                .or(args.port)
                .or_else(|| crate::proxy::announced_port(paths))
                .unwrap_or(crate::proxy::DEFAULT_PORT);
            outln!(
                "{}",
                crate::proxy::url_for(paths, &cfg, &cwd()?, &alias, port)?
            );
            Ok(0)
        }
    }
}

fn cwd() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read the current directory: {e}"),
        )
    })
}

pub(crate) fn broker(paths: &Paths) -> Result<Broker> {
    let cfg = HostConfig::load(paths)?;
    let backends = outloop_backends::from_config(&cfg)?;
    Broker::builder(cfg)
        .backends(backends)
        .on_hold(std::sync::Arc::new(|a: &outloop_core::approval::Approval| {
            errln!(
                "outloop: held for a human's approval as {}; run `outloop approve {}` (or reject) from outside the workspace; waiting until {}",
                a.id,
                a.id,
                chrono_time(a.expires)
            );
        }))
        .build()
}

fn chrono_time(unix: i64) -> String {
    let secs = unix - chrono_now();
    format!("{secs} s from now")
}

pub(crate) fn parse_params(raw: &[String]) -> Result<RawParams> {
    let mut out = RawParams::new();
    for p in raw {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            Error::new(
                ErrorKind::Usage,
                format!(
                    "-p expects `key=value`, got `{}`",
                    p.chars().take(40).collect::<String>()
                ),
            )
        })?;
        if k.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                "-p expects `key=value` with a non-empty key",
            ));
        }
        if out
            .insert(k.to_owned(), serde_json::Value::String(v.to_owned()))
            .is_some()
        {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("parameter `{k}` is given twice"),
            ));
        }
    }
    Ok(out)
}

fn vaults(cfg: &HostConfig) -> Result<Vec<VaultBackend>> {
    let bound: Vec<PathBuf> = cfg
        .tenants
        .values()
        .flat_map(|t| t.workspaces.iter().cloned())
        .collect();
    cfg.backends
        .iter()
        .filter(|(_, b)| b.kind == BackendKind::Vault.config_name())
        .map(|(name, b)| VaultBackend::open(name, &cfg.paths, &b.settings, &bound))
        .collect()
}

fn init(paths: &Paths) -> Result<u8> {
    let file = paths.config_file();
    create_private_dir(&paths.config_dir)
        .map_err(|e| Error::io("cannot create", &paths.config_dir, e))?;
    if file.exists() {
        outln!("config: {} (kept)", file.display());
    } else {
        edit::write_atomic(&file, edit::TEMPLATE.as_bytes())?;
        outln!("config: {} (created)", file.display());
    }
    let actions = paths.config_dir.join("actions");
    create_private_dir(&actions).map_err(|e| Error::io("cannot create", &actions, e))?;
    let cfg = HostConfig::load(paths)?;
    for v in vaults(&cfg)? {
        let created = v.init()?;
        outln!(
            "vault: {} ({}); identity: {}",
            v.file().display(),
            if created { "created" } else { "kept" },
            v.identity_location()
        );
    }
    outln!("audit log: {}", paths.audit_file().display());
    Ok(0)
}

/// Reads a secret from stdin, or from a no-echo prompt when stdin is a terminal.
fn read_secret(keep_newline: bool) -> Result<SecretValue> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let v = rpassword::prompt_password("secret value (not echoed): ").map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot read the secret from the terminal: {e}"),
            )
        })?;
        return Ok(SecretValue::from_string(v));
    }
    // Reserve up front so typical values are read without reallocating (a reallocation would
    // leave an unzeroized copy behind).
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(64 * 1024));
    stdin.lock().read_to_end(&mut buf).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read the secret from stdin: {e}"),
        )
    })?;
    if !keep_newline {
        let len = buf.len();
        let strip = if buf.ends_with(b"\r\n") {
            2
        } else {
            usize::from(buf.ends_with(b"\n"))
        };
        buf.truncate(len - strip);
    }
    Ok(SecretValue::new(std::mem::take(&mut *buf)))
}

fn backend_for(
    backends: &[Arc<dyn SecretBackend>],
    r: &SecretRef,
) -> Result<Arc<dyn SecretBackend>> {
    backends
        .iter()
        .find(|b| b.kind() == r.kind())
        .cloned()
        .ok_or_else(|| {
            Error::config(format!(
                "no `[backends.*]` table with kind = \"{}\" for `{r}`",
                r.kind().config_name()
            ))
        })
}

async fn secret(paths: &Paths, command: SecretCommand) -> Result<u8> {
    let cfg = HostConfig::load(paths)?;
    let backends = outloop_backends::from_config(&cfg)?;
    match command {
        SecretCommand::Set {
            reference,
            tenant,
            credential,
            keep_newline,
            replace,
        } => {
            let r = SecretRef::parse(&reference)?;
            let backend = backend_for(&backends, &r)?;
            if let Some(t) = tenant.as_ref().filter(|t| !cfg.tenants.contains_key(*t)) {
                return Err(Error::config(format!(
                    "no tenant `{t}` in the config; add it with `outloop tenant add {t}`"
                )));
            }
            // A reference already filed under another tenant is that tenant's secret.
            if let Some(t) = &tenant {
                for (other, tc) in &cfg.tenants {
                    if let Some((c, _)) = tc.credentials.iter().find(|(_, e)| e.reference == r)
                        && other != t
                    {
                        return Err(Error::config(format!(
                            "`{r}` is credential `{c}` of tenant `{other}`; give tenant `{t}` its own reference"
                        )));
                    }
                }
            }
            if !replace && backend.capabilities().list && backend.list().await?.contains(&r) {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("`{r}` already holds a secret; pass --replace to overwrite it"),
                ));
            }
            let value = read_secret(keep_newline)?;
            if value.len() > MAX_SECRET_BYTES {
                return Err(Error::new(
                    ErrorKind::InvalidSecret,
                    format!("refused a secret larger than {MAX_SECRET_BYTES} bytes"),
                ));
            }
            let floor = cfg.redaction.floor;
            if value.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidSecret,
                    "refused an empty secret value",
                ));
            }
            if value.len() < floor {
                return Err(Error::new(
                    ErrorKind::InvalidSecret,
                    format!(
                        "refused a secret shorter than the redaction floor of {floor} bytes (set [redaction] floor to change it)"
                    ),
                ));
            }
            // The redactor's own rules (punctuation or whitespace only, too large to search
            // for): a value every later call would refuse is refused now.
            outloop_core::redact::RedactorBuilder::new()
                .floor(floor)
                .add(&r.to_string(), &value)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidSecret,
                        format!("refused: {}", e.message()),
                    )
                })?;
            backend.set(&r, value).await?;
            outln!("stored {r}");
            if let (Some(t), Some(c)) = (tenant, credential) {
                edit::set_credential(paths, &t, &c, &r.to_string())?;
                outln!("tenant `{t}` credential `{c}` = {r}");
            }
            Ok(0)
        }
        SecretCommand::List { json } => {
            let mut refs = Vec::new();
            for b in &backends {
                if b.capabilities().list {
                    refs.extend(b.list().await?);
                }
            }
            refs.sort();
            if json {
                let v: Vec<String> = refs.iter().map(ToString::to_string).collect();
                outln!("{}", serde_json::json!({ "secrets": v }));
            } else {
                for r in refs {
                    outln!("{r}");
                }
            }
            Ok(0)
        }
        SecretCommand::Delete { reference } => {
            let r = SecretRef::parse(&reference)?;
            backend_for(&backends, &r)?.delete(&r).await?;
            outln!("deleted {r}");
            Ok(0)
        }
    }
}

async fn actions(paths: &Paths, json: bool) -> Result<u8> {
    // Through the daemon when one runs, else in-process; the same answer either way.
    let ws = crate::daemon::client::actions(paths).await?;
    let list = ws.actions;
    if json {
        let v = serde_json::json!({
            "workspace": ws.workspace.display().to_string(),
            "tenant": ws.tenant,
            "actions": list,
        });
        outln!("{v}");
    } else {
        outln!(
            "workspace {} (tenant `{}`)",
            ws.workspace.display(),
            ws.tenant
        );
        if list.is_empty() {
            outln!(
                "no actions are allowed here; see [policy.tenants.{}]",
                ws.tenant
            );
        }
        let width = list.iter().map(|a| a.name.len()).max().unwrap_or(0);
        for a in list {
            let held = if a.decision == "approve" {
                " (needs approval)"
            } else {
                ""
            };
            outln!("  {:width$}  {}{held}", a.name, a.description);
        }
    }
    Ok(0)
}

async fn call(paths: &Paths, args: CallArgs) -> Result<u8> {
    let params = parse_params(&args.params)?;
    // Through the daemon when one runs, else in-process; the same answer either way.
    // SIGINT or SIGTERM while the call runs (or waits for approval) drops it: in-process,
    // the broker then appends its record as `cancelled`; a daemon finishes and audits it.
    let stop = interrupted();
    let call = crate::daemon::client::call(paths, args.action, params, args.tenant);
    let result = tokio::select! {
        signal = stop => {
            errln!("outloop: call: stopped by signal {signal}; the attempt is in the audit log");
            return Ok(128 + signal);
        }
        r = call => r?,
    };
    if args.json {
        let v = serde_json::to_string(&result)
            .map_err(|e| Error::internal(format!("cannot encode the result: {e}")))?;
        outln!("{v}");
    } else {
        errln!(
            "{} {} · tenant {} · {} redaction{}",
            result.status,
            result.status_text,
            result.tenant,
            result.redactions,
            if result.redactions == 1 { "" } else { "s" }
        );
        outln!("{}", result.body.trim_end_matches('\n'));
    }
    Ok(0)
}

/// Listens for SIGINT and SIGTERM from the moment it is called; the future resolves to the
/// number of the first to arrive (2 or 15), and never when the listeners cannot be set up.
pub(crate) fn interrupted() -> impl std::future::Future<Output = u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let listeners = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match listeners {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
            },
            _ => std::future::pending().await,
        }
    }
}

async fn explain(paths: &Paths, args: ExplainArgs) -> Result<u8> {
    let params = parse_params(&args.params)?;
    let dir = match &args.workspace {
        Some(d) => Some(std::fs::canonicalize(d).map_err(|e| {
            Error::new(
                ErrorKind::Usage,
                format!("--workspace `{}`: {e}", d.display()),
            )
        })?),
        None => None,
    };
    let alias_request = args.method.zip(args.path);
    // Through the daemon when one runs, else in-process; the same answer either way.
    let e = crate::daemon::client::explain(paths, args.action, params, dir, alias_request).await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&e).map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        outln!("decision: {}", e.decision);
        outln!("tenant:   {} (workspace {})", e.tenant, e.workspace);
        outln!("rule:     {}", e.rule);
        outln!("reason:   {}", e.reason);
        for r in &e.rates {
            outln!("rate:     {r}");
        }
    }
    Ok(0)
}

fn audit(paths: &Paths, command: AuditCommand) -> Result<u8> {
    let log = AuditLog::new(paths.audit_file());
    match command {
        AuditCommand::Tail { n, json } => {
            for r in log.tail(Some(n))? {
                if json {
                    outln!(
                        "{}",
                        serde_json::to_string(&r).map_err(|e| Error::internal(e.to_string()))?
                    );
                } else {
                    let status = r
                        .status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into());
                    let reason = r
                        .reason
                        .as_deref()
                        .map(|s| format!("  {s}"))
                        .unwrap_or_default();
                    // Redaction findings, only when there are any: `folded=N` and the alert.
                    let folded = match r.folded {
                        0 => String::new(),
                        n => format!(" folded={n}"),
                    };
                    let alert = r
                        .alert
                        .as_deref()
                        .map(|a| format!("  ALERT: {a}"))
                        .unwrap_or_default();
                    outln!(
                        "{}  {}  {}  {}  {}  {}  redactions={}{}{}{}",
                        r.time,
                        r.tenant.as_deref().unwrap_or("-"),
                        r.action,
                        r.decision,
                        r.outcome,
                        status,
                        r.redactions,
                        folded,
                        reason,
                        alert
                    );
                }
            }
            Ok(0)
        }
        AuditCommand::Verify => {
            let n = log.verify()?;
            outln!(
                "audit log {}: {n} records, chain intact",
                log.path().display()
            );
            Ok(0)
        }
    }
}

/// Refuses to run inside a bound workspace: an agent working there must not decide on its
/// own held request.
fn outside_workspaces(cfg: &HostConfig) -> Result<()> {
    let dir = cwd()?;
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    if let Some((root, tenant)) = outloop_core::workspace::find_binding(cfg, &dir) {
        return Err(Error::new(
            ErrorKind::PolicyDenied,
            format!(
                "approval commands are refused inside a bound workspace (`{}`, tenant `{tenant}`); run them from outside every workspace",
                root.display()
            ),
        ));
    }
    Ok(())
}

fn approvals(paths: &Paths, json: bool) -> Result<u8> {
    let cfg = HostConfig::load(paths)?;
    outside_workspaces(&cfg)?;
    let store = outloop_core::approval::ApprovalStore::new(paths.state_dir.join("approvals"));
    let pending = store.pending(chrono_now())?;
    if json {
        outln!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "approvals": pending }))
                .map_err(|e| Error::internal(e.to_string()))?
        );
    } else if pending.is_empty() {
        outln!("no requests are waiting for approval");
    } else {
        for a in pending {
            outln!(
                "{}  tenant {}  {} {}  params {}  (expires in {} s; rule: {})",
                a.id,
                a.tenant,
                a.method,
                a.action,
                a.params,
                (a.expires - chrono_now()).max(0),
                a.rule
            );
            outln!("    from {}", a.workspace);
        }
    }
    Ok(0)
}

fn decide(paths: &Paths, id: &str, approve: bool) -> Result<u8> {
    let cfg = HostConfig::load(paths)?;
    outside_workspaces(&cfg)?;
    let store = outloop_core::approval::ApprovalStore::new(paths.state_dir.join("approvals"));
    let a = store.decide(id, approve, chrono_now())?;
    outln!(
        "{} {}: {} {} for tenant `{}` with params {}",
        if approve { "approved" } else { "rejected" },
        a.id,
        a.method,
        a.action,
        a.tenant,
        a.params
    );
    Ok(0)
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
