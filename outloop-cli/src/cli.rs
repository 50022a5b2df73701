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
            Command::Actions { json } => *json,
            Command::Policy {
                command: PolicyCommand::Explain(e),
            } => e.json,
            Command::Policy {
                command: PolicyCommand::Test { json, .. },
            } => *json,
            Command::Approvals { json } => *json,
            Command::Status { json } => *json,
            _ => false,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the host config and the embedded vault if missing.
    Init,
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
    /// Read and check the audit log.
    Audit {
        /// The audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run the per-user daemon on its Unix socket (every command uses it while it runs).
    ///
    /// SIGHUP reloads the host config (a bad one is refused and the old one kept); SIGTERM
    /// drains requests in flight and exits.
    Serve,
    /// Report whether the daemon runs: pid, socket, config, uptime, requests served.
    ///
    /// Exits 0 when it runs, 3 when it does not.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
