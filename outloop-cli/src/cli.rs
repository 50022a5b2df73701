//! The command-line surface (DESIGN.md, "Command line").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Outloop: AI agents call approved actions; the keys stay in your backends.
#[derive(Debug, Parser)]
#[command(name = "outloop", version, about, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command asked for JSON output (errors are then also printed as JSON).
    pub fn json_errors(&self) -> bool {
        match &self.command {
            Command::Call(c) => c.json,
            Command::Actions { json, .. } => *json,
            Command::Policy {
                command: PolicyCommand::Explain(e),
            } => e.json,
            Command::Policy {
                command: PolicyCommand::Test { json, .. },
            } => *json,
            Command::Approvals { json } => *json,
            Command::Doctor { json } => *json,
            Command::Scan(s) => s.json,
            Command::Status { json } => *json,
            _ => false,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the host config and the embedded vault if missing; with `--agent`, set up an AI
    /// agent's MCP entry and file rules for a workspace instead.
    Init(InitArgs),
    /// Manage tenants (client accounts).
    Tenant {
        /// The tenant command.
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Bind a workspace directory to a tenant.
    Bind {
        /// The directory (created by you; resolved to its canonical path).
        dir: PathBuf,
        /// The tenant it belongs to.
        tenant: String,
    },
    /// Store and list secrets.
    Secret {
        /// The secret command.
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// The actions and aliases this workspace may use.
    Actions {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Validate this action pack on its own (no host config needed) and list what it
        /// defines: name, read or write, method, URL, credentials, description.
        #[arg(long, value_name = "FILE")]
        pack: Option<PathBuf>,
    },
    /// Perform an action for the current workspace.
    Call(CallArgs),
    /// Inspect policy decisions.
    Policy {
        /// The policy command.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// List requests held for a human's approval (refused inside a bound workspace).
    Approvals {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held request (refused inside a bound workspace).
    Approve {
        /// The approval id from `outloop approvals`.
        id: String,
    },
    /// Reject a held request (refused inside a bound workspace).
    Reject {
        /// The approval id from `outloop approvals`.
        id: String,
    },
    /// Run a command with credentials as environment variables; its output is redacted.
    Exec(crate::exec::ExecArgs),
    /// Read and check the audit log.
    Audit {
        /// The audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// MCP server on stdio for the workspace it starts in (started by the agent).
    Mcp {
        /// Serve this workspace directory instead of the current one.
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Check each configured backend: installed, reachable, authenticated (reads no secret;
    /// exit 4 when one is not OK).
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the per-user daemon on its Unix socket (every command uses it while it runs).
    ///
    /// SIGHUP reloads the host config (a bad one is refused and the old one kept); SIGTERM
    /// drains requests in flight and exits.
    Serve {
        /// Also serve the alias proxy on 127.0.0.1 at this port (0 picks a free one; the
        /// port is recorded for `outloop proxy url`).
        #[arg(long)]
        proxy_port: Option<u16>,
    },
    /// Report whether the daemon runs: pid, socket, config, uptime, requests served.
    ///
    /// Exits 0 when it runs, 3 when it does not.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Find likely credentials in a directory; exits 6 when something is found.
    Scan(ScanArgs),
    /// Move the secrets of a `.env` (JSON, YAML) file into a backend and file them as the
    /// tenant's credentials; the file keeps a comment where each value was.
    Import(ImportArgs),
    /// The alias proxy on 127.0.0.1: `/<token>/<alias>/<path>` goes to the alias's base URL
    /// with the credential applied.
    Proxy(ProxyArgs),
}

/// `outloop init …`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write this agent's MCP server entry and file rules for the workspace
    /// (`claude-code`, `cursor` or `codex`) instead of creating the host config.
    #[arg(long, value_enum)]
    pub agent: Option<crate::agent_setup::Agent>,
    /// With `--agent`: the workspace directory (default: the current one).
    #[arg(long, requires = "agent")]
    pub workspace: Option<PathBuf>,
}

/// `outloop scan …`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The directory to scan (default: the current directory).
    pub dir: Option<PathBuf>,
    /// Also scan files that `.gitignore`, `.ignore` or `.git/info/exclude` exclude.
    #[arg(long)]
    pub include_ignored: bool,
    /// Do not look for the values stored in Outloop's backends.
    #[arg(long)]
    pub no_backends: bool,
    /// Print one JSON object: root, findings, files_scanned, skipped, stored_values.
    #[arg(long)]
    pub json: bool,
}

/// `outloop import …`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import from (`.env`, `.json`, `.yaml`/`.yml`).
    pub file: PathBuf,
    /// The tenant whose credentials the secrets become.
    #[arg(long)]
    pub tenant: String,
    /// The writable backend (`[backends.<name>]`) to store them in (default: `vault`).
    #[arg(long)]
    pub backend: Option<String>,
    /// Prepended to each credential name and stored name, e.g. `app_`.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// The file's format (default: from the extension; `.env` otherwise).
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Move every non-empty entry, not only those that look like secrets.
    #[arg(long)]
    pub all: bool,
    /// Show the plan (names and references, never values) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The formats `outloop import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// `KEY=value` lines (`export`, quotes, comments).
    Env,
    /// A JSON object whose string members are the entries.
    Json,
    /// A YAML mapping whose single-line string values are the entries.
    Yaml,
}

/// `outloop proxy [--port N]` and `outloop proxy url <alias>`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The port to listen on (default 7787; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// `url <alias>`: print the base URL for this workspace instead of serving.
    #[command(subcommand)]
    pub command: Option<ProxyCommand>,
}

/// `outloop proxy …`.
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Print the alias's proxy base URL for the current workspace, its token included.
    Url {
        /// The alias name.
        alias: String,
        /// The proxy's port (default: the running proxy's, else 7787).
        #[arg(long)]
        port: Option<u16>,
    },
}

/// `outloop tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Add a tenant to the host config.
    Add {
        /// Tenant name: letters, digits, `-`, `_` and `.`.
        name: String,
    },
    /// List tenants and their workspaces.
    List,
}

/// `outloop secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret read from stdin (or a no-echo prompt on a terminal); never from argv.
    Set {
        /// Where to store it, e.g. `vault://acme/hubspot`.
        reference: String,
        /// Also file the reference as this tenant's credential (needs `--credential`).
        #[arg(long, requires = "credential")]
        tenant: Option<String>,
        /// The credential name to file it under (needs `--tenant`).
        #[arg(long, requires = "tenant")]
        credential: Option<String>,
        /// Replace a value already stored at the reference (refused otherwise, so nothing is
        /// overwritten by mistake).
        #[arg(long)]
        replace: bool,
        /// Keep a trailing newline read from stdin (by default one trailing `\n` or `\r\n` is
        /// removed, as `echo … |` adds it).
        #[arg(long)]
        keep_newline: bool,
    },
    /// List stored secret references (never values).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a stored secret.
    Delete {
        /// The reference to delete.
        reference: String,
    },
}

/// `outloop call …`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The action name.
    pub action: String,
    /// A parameter, `key=value` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// The tenant the caller expects; a tenant other than the workspace's is denied.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print one JSON object: action, tenant, status, headers, body, redactions.
    #[arg(long)]
    pub json: bool,
}

/// `outloop policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The decision for a request and the rule behind it, with no backend call.
    Explain(ExplainArgs),
    /// Check a table of requests against their expected decisions; exit 0 only if all match.
    Test {
        /// A TOML file of `[[case]]` tables: `workspace`, `action`, optional `params`,
        /// `method` and `path` (aliases), and `expect` (`allow`, `deny` or `approve`).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `outloop policy explain …`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The action name, or `alias:<name>`.
    pub action: String,
    /// A parameter, `key=value` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Explain for this workspace directory instead of the current one.
    #[arg(long)]
    pub workspace: Option<PathBuf>,
    /// For `alias:<name>`: the request's HTTP method.
    #[arg(long, requires = "path")]
    pub method: Option<String>,
    /// For `alias:<name>`: the request's path below the alias base URL.
    #[arg(long, requires = "method")]
    pub path: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `outloop audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the last records.
    Tail {
        /// How many records.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
        /// Print JSON Lines.
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain of the whole log.
    Verify,
}
