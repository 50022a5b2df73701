//! `outloop policy test <file>`: a table of requests and the decisions they must get.
//!
//! The file is TOML, kept beside the host config and run in the user's CI:
//!
//! ```toml
//! [[case]]
//! name = "acme may list contacts"          # optional
//! workspace = "~/clients/acme"             # relative paths are relative to this file
//! action = "hubspot.contacts.list"         # or "alias:hubspot" with method and path
//! params = { limit = 5 }
//! expect = "allow"                         # allow, deny or approve
//! ```
//!
//! Each case is decided as `outloop policy explain` decides it: no backend is touched and no
//! audit record is written. A request the broker refuses before policy (an unbound workspace)
//! counts as `deny`.

use std::path::{Path, PathBuf};

use outloop_core::action::RawParams;
use outloop_core::config::{Paths, normalize_dir};
use outloop_core::{Error, ErrorKind, Result};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    name: Option<String>,
    workspace: PathBuf,
    action: String,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
    Approve,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::Approve => "approve",
        }
    }
}

fn to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        other => serde_json::Value::String(other.to_string()),
    }
}

/// Runs the table in `file`; returns exit code 0 when every case matches, 1 otherwise.
pub fn run(paths: &Paths, file: &Path, json: bool) -> Result<u8> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::new(
            ErrorKind::Usage,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let table: File = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        Error::new(
            ErrorKind::Usage,
            format!("{}:{line}: {}", file.display(), e.message().trim()),
        )
    })?;
    let broker = crate::commands::broker(paths)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    let mut failed = 0;
    for (i, case) in table.case.iter().enumerate() {
        let ws = if case.workspace.is_absolute() || case.workspace.starts_with("~") {
            case.workspace.clone()
        } else {
            base.join(&case.workspace)
        };
        let ws = normalize_dir(&ws)?;
        let params: RawParams = case
            .params
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect();
        let request = case.method.as_deref().zip(case.path.as_deref());
        let (got, rule) = match broker.explain_request(&ws, &case.action, &params, request) {
            Ok(e) => (e.decision, e.rule),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnboundWorkspace | ErrorKind::PolicyDenied
                ) =>
            {
                ("deny".to_owned(), e.message().to_owned())
            }
            Err(e) => ("error".to_owned(), e.message().to_owned()),
        };
        let pass = got == case.expect.as_str();
        if !pass {
            failed += 1;
        }
        rows.push(serde_json::json!({
            "case": case.name.clone().unwrap_or_else(|| format!("case {}", i + 1)),
            "workspace": ws.display().to_string(),
            "action": case.action,
            "expect": case.expect.as_str(),
            "got": got,
            "rule": rule,
            "pass": pass,
        }));
    }
    if json {
        outln!("{}", serde_json::json!({ "cases": rows, "failed": failed }));
    } else {
        for r in &rows {
            outln!(
                "{}  {:<7} {:<7} {}  {}  ({})",
                if r["pass"] == true { "PASS" } else { "FAIL" },
                r["expect"].as_str().unwrap_or(""),
                r["got"].as_str().unwrap_or(""),
                r["case"].as_str().unwrap_or(""),
                r["action"].as_str().unwrap_or(""),
                r["rule"].as_str().unwrap_or("")
            );
        }
        outln!("{} passed, {} failed", rows.len() - failed, failed);
    }
    Ok(u8::from(failed > 0))
}
