//! The commands: parse, call the library, print.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
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

/// Runs one command; returns the process exit code on success.
pub async fn run(cli: Cli) -> Result<u8> {
    let paths = Paths::from_env()?;
    match cli.command {
        Command::Init => init(&paths),
        Command::Tenant { command } => match command {
            TenantCommand::Add { name } => {
                edit::add_tenant(&paths, &name)?;
                println!(
                    "added tenant `{name}`; bind a workspace with `outloop bind <dir> {name}`"
                );
                Ok(0)
            }
            TenantCommand::List => {
                let cfg = HostConfig::load(&paths)?;
                for (name, t) in &cfg.tenants {
                    println!("{name}");
                    for w in &t.workspaces {
                        println!("  workspace  {}", w.display());
                    }
                    for (c, e) in &t.credentials {
                        println!("  credential {c} = {}", e.reference);
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
            println!("bound {} to tenant `{tenant}`", canonical.display());
            Ok(0)
        }
        Command::Secret { command } => secret(&paths, command).await,
        Command::Actions { json } => actions(&paths, json),
        Command::Call(args) => call(&paths, args).await,
        Command::Policy {
            command: PolicyCommand::Explain(args),
        } => explain(&paths, args),
        Command::Audit { command } => audit(&paths, command),
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

fn broker(paths: &Paths) -> Result<Broker> {
    let cfg = HostConfig::load(paths)?;
    let backends = outloop_backends::from_config(&cfg)?;
    Broker::builder(cfg).backends(backends).build()
}

fn parse_params(raw: &[String]) -> Result<RawParams> {
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
        println!("config: {} (kept)", file.display());
    } else {
        edit::write_atomic(&file, edit::TEMPLATE.as_bytes())?;
        println!("config: {} (created)", file.display());
    }
    let actions = paths.config_dir.join("actions");
    create_private_dir(&actions).map_err(|e| Error::io("cannot create", &actions, e))?;
    let cfg = HostConfig::load(paths)?;
    for v in vaults(&cfg)? {
        let created = v.init()?;
        println!(
            "vault: {} ({}); identity: {}",
            v.file().display(),
            if created { "created" } else { "kept" },
            v.identity_location()
        );
    }
    println!("audit log: {}", paths.audit_file().display());
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
        } => {
            let r = SecretRef::parse(&reference)?;
            let backend = backend_for(&backends, &r)?;
            if let Some(t) = tenant.as_ref().filter(|t| !cfg.tenants.contains_key(*t)) {
                return Err(Error::config(format!(
                    "no tenant `{t}` in the config; add it with `outloop tenant add {t}`"
                )));
            }
            let value = read_secret(keep_newline)?;
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
            backend.set(&r, value).await?;
            println!("stored {r}");
            if let (Some(t), Some(c)) = (tenant, credential) {
                edit::set_credential(paths, &t, &c, &r.to_string())?;
                println!("tenant `{t}` credential `{c}` = {r}");
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
                println!("{}", serde_json::json!({ "secrets": v }));
            } else {
                for r in refs {
                    println!("{r}");
                }
            }
            Ok(0)
        }
        SecretCommand::Delete { reference } => {
            let r = SecretRef::parse(&reference)?;
            backend_for(&backends, &r)?.delete(&r).await?;
            println!("deleted {r}");
            Ok(0)
        }
    }
}

fn actions(paths: &Paths, json: bool) -> Result<u8> {
    let b = broker(paths)?;
    let (ws, list) = b.actions_for(&cwd()?)?;
    if json {
        let v = serde_json::json!({
            "workspace": ws.root.display().to_string(),
            "tenant": ws.tenant,
            "actions": list,
        });
        println!("{v}");
    } else {
        println!("workspace {} (tenant `{}`)", ws.root.display(), ws.tenant);
        if list.is_empty() {
            println!(
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
            println!("  {:width$}  {}{held}", a.name, a.description);
        }
    }
    Ok(0)
}

async fn call(paths: &Paths, args: CallArgs) -> Result<u8> {
    let params = parse_params(&args.params)?;
    let b = broker(paths)?;
    let result = b
        .call(outloop_core::broker::CallRequest {
            workspace: cwd()?,
            tenant: args.tenant,
            action: args.action,
            params,
        })
        .await?;
    if args.json {
        let v = serde_json::to_string(&result)
            .map_err(|e| Error::internal(format!("cannot encode the result: {e}")))?;
        println!("{v}");
    } else {
        eprintln!(
            "{} {} · tenant {} · {} redaction{}",
            result.status,
            result.status_text,
            result.tenant,
            result.redactions,
            if result.redactions == 1 { "" } else { "s" }
        );
        println!("{}", result.body.trim_end_matches('\n'));
    }
    Ok(0)
}

fn explain(paths: &Paths, args: ExplainArgs) -> Result<u8> {
    let params = parse_params(&args.params)?;
    let b = broker(paths)?;
    let dir = match &args.workspace {
        Some(d) => d.clone(),
        None => cwd()?,
    };
    let e = b.explain(Path::new(&dir), &args.action, &params)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&e).map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        println!("decision: {}", e.decision);
        println!("tenant:   {} (workspace {})", e.tenant, e.workspace);
        println!("rule:     {}", e.rule);
        println!("reason:   {}", e.reason);
    }
    Ok(0)
}

fn audit(paths: &Paths, command: AuditCommand) -> Result<u8> {
    let log = AuditLog::new(paths.audit_file());
    match command {
        AuditCommand::Tail { n, json } => {
            for r in log.tail(Some(n))? {
                if json {
                    println!(
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
                    println!(
                        "{}  {}  {}  {}  {}  {}  redactions={}{}",
                        r.time,
                        r.tenant.as_deref().unwrap_or("-"),
                        r.action,
                        r.decision,
                        r.outcome,
                        status,
                        r.redactions,
                        reason
                    );
                }
            }
            Ok(0)
        }
        AuditCommand::Verify => {
            let n = log.verify()?;
            println!(
                "audit log {}: {n} records, chain intact",
                log.path().display()
            );
            Ok(0)
        }
    }
}
